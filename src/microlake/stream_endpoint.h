// StreamEndpoint: a session over a byte stream (TCP or vsock), for a remote
// accelerator or a VM without shared memory.
//
// There are no rings: the guest sends frames (ipc/frame_stream.h). An arena
// frame fills a range of the host's private copy of the arena before the
// command that reads it; a command frame carries a Command and its extension
// records. Completions go back from a writer thread, each preceded by the
// arena bytes its command wrote (D2H), so the dispatcher above sees exactly
// the same arena semantics as over shared memory. The reader stops taking
// commands while `completion_window` completions are owed, which pushes back
// on the guest through TCP flow control instead of growing host memory.
#pragma once

#include <condition_variable>
#include <deque>
#include <thread>

#include "accel/backend.h"
#include "ipc/shared_region.h"
#include "ipc/socket.h"
#include "microlake/endpoint.h"

namespace malv::microlake {

class StreamEndpoint final : public Endpoint, private CompletionSink {
 public:
  static Result<std::unique_ptr<StreamEndpoint>> create(std::string vm_name, ipc::Socket socket,
                                                        std::uint64_t arena_bytes,
                                                        std::uint32_t completion_window,
                                                        accel::Backend& shared_backend,
                                                        std::unique_ptr<accel::Backend> own_backend,
                                                        const SessionLimits& limits,
                                                        const SessionServices& services);
  ~StreamEndpoint() override;

  void run() override;
  void stop() override;
  const std::string& vm_name() const override { return vm_name_; }

 private:
  StreamEndpoint(std::string vm_name, ipc::Socket socket, ipc::SharedRegion arena,
                 std::uint32_t completion_window, accel::Backend& backend);
  void post(const wire::Completion& completion, proto::ArenaRange arena_out) override;
  void write_loop();
  Status read_one_frame();

  struct Outgoing {
    wire::Completion completion;
    proto::ArenaRange arena_out;
  };

  std::string vm_name_;
  ipc::Socket socket_;
  ipc::SharedRegion arena_;
  const std::uint32_t completion_window_;
  accel::Backend& backend_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Outgoing> outgoing_;  // guarded by mutex_
  bool closing_ = false;           // guarded by mutex_
  std::atomic<bool> stop_{false};
  std::thread writer_;
  // The session's own view of the device (a VM's quotas and scheduling),
  // when it has one; outlives the session.
  std::unique_ptr<accel::Backend> own_backend_;
  std::unique_ptr<Session> session_;
};

}  // namespace malv::microlake
