// ShmEndpoint: a session over a Unix socket and a shared memfd holding the
// submission ring, the completion ring and the data arena (ipc/channel_layout.h).
//
// The dispatcher takes a command only when the completion ring has room for
// its completion and for every completion still owed (Session::outstanding),
// so posting from backend threads never waits for the guest. A guest that
// stops reading completions therefore only stalls itself. The Unix socket
// stays open for the session's life: its hang-up is how the host learns that
// a guest died, and the session is then torn down.
//
// Stream ops are staged (Session::Flush::kLater) while the ring holds more
// commands and handed to the backend in one batch when it runs dry, before
// the dispatcher waits for any reason, and every Session::kMaxStagedOps ops:
// a guest streaming launches costs the host one backend call per batch, not
// one per launch.
#pragma once

#include <memory>
#include <mutex>

#include "accel/backend.h"
#include "ipc/channel_layout.h"
#include "ipc/shared_region.h"
#include "ipc/socket.h"
#include "microlake/endpoint.h"

namespace malv::microlake {

class ShmEndpoint final : public Endpoint, private CompletionSink {
 public:
  // Maps nothing new: `region` was created and initialised by the caller,
  // which already sent it to the guest.
  static Result<std::unique_ptr<ShmEndpoint>> create(std::string vm_name, ipc::Socket socket,
                                                     ipc::SharedRegion region,
                                                     const ipc::ChannelLayout& layout,
                                                     accel::Backend& shared_backend,
                                                     std::unique_ptr<accel::Backend> own_backend,
                                                     const SessionLimits& limits,
                                                     const SessionServices& services);
  // A session in one slot of a VM's ivshmem region (ipc/ivshmem_layout.h):
  // `memory` is the slot, initialised by the caller, kept mapped by
  // `memory_owner` for the endpoint's life. No socket: the caller ends the
  // session with stop() when the VM or its guest goes away.
  static Result<std::unique_ptr<ShmEndpoint>> create_in_slot(
      std::string vm_name, std::span<std::byte> memory, std::shared_ptr<const void> memory_owner,
      const ipc::ChannelLayout& layout, accel::Backend& shared_backend,
      std::unique_ptr<accel::Backend> own_backend, const SessionLimits& limits,
      const SessionServices& services);
  ~ShmEndpoint() override;

  void run() override;
  void stop() override;
  const std::string& vm_name() const override { return vm_name_; }

 private:
  ShmEndpoint(std::string vm_name, ipc::Socket socket, ipc::SharedRegion region,
              ipc::ChannelView view, const ipc::ChannelLayout& layout, accel::Backend& backend);
  static Result<std::unique_ptr<ShmEndpoint>> create_over(
      std::string vm_name, ipc::Socket socket, ipc::SharedRegion region,
      std::span<std::byte> memory, const ipc::ChannelLayout& layout, accel::Backend& shared_backend,
      std::unique_ptr<accel::Backend> own_backend, const SessionLimits& limits,
      const SessionServices& services);
  void post(const wire::Completion& completion, proto::ArenaRange arena_out) override;
  void settled() override;
  bool guest_alive() const;
  // Free completion-ring slots, or nullopt when the guest corrupted the ring.
  std::optional<std::uint32_t> completion_room();

  std::string vm_name_;
  ipc::Socket socket_;  // not open for an ivshmem slot
  ipc::SharedRegion region_;
  std::shared_ptr<const void> memory_owner_;  // an ivshmem slot's region
  ipc::ChannelView view_;
  accel::Backend& backend_;
  ipc::RingConsumer<wire::Command> submissions_;
  std::mutex completions_mutex_;
  ipc::RingProducer<wire::Completion> completions_;  // guarded by completions_mutex_
  bool broken_ = false;                              // guarded by completions_mutex_
  std::atomic<bool> stop_{false};
  // The dispatcher shares its one core with the backend's worker
  // (--host-cpus): the last completion wakes it if it sleeps (settled()).
  std::atomic<bool> one_core_{false};
  // The session's own view of the device (a VM's quotas and scheduling),
  // when it has one; outlives the session.
  std::unique_ptr<accel::Backend> own_backend_;
  std::unique_ptr<Session> session_;  // last: destroyed first, while the rings still exist
};

}  // namespace malv::microlake
