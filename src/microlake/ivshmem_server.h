// IvshmemServer: the front door for real VMs. For each VM configured for
// it, the host listens on a Unix socket and acts as the ivshmem server of
// the VM's QEMU (`-chardev socket,path=...,id=c -device
// ivshmem-doorbell,chardev=c,vectors=N`): QEMU gets one shared region for
// the VM (its PCI BAR 2) holding a slot per session (ipc/ivshmem_layout.h)
// and the host's doorbell eventfds; the guest's commands then use the same
// rings as a process guest's, and each session runs on a ShmEndpoint of
// its own thread, admitted by the same callback as Server's guests.
//
//   IvshmemServerOptions options;
//   options.vms = {{"vm-a", "/run/malv/vm-a.ivshmem"}};
//   options.admit = [&](const HelloInfo& info) { return daemon.admit(info); };
//   MALV_ASSIGN_OR_RETURN(auto ivshmem, IvshmemServer::start(backend, options));
//
// One QEMU per VM at a time: a second connection to a VM's socket while
// the first is live is closed at once (QEMU then fails to start its
// device). When QEMU goes away (the VM powered off, QEMU killed), its
// socket hangs up and every session of that VM is torn down at once; the
// next QEMU gets a fresh region. Inside a live VM, a slot whose guest
// stops its heartbeat (the process died, the guest rebooted) is reclaimed
// after ipc::kIvshmemHeartbeatTimeout. A reclaimed slot's memory is
// discarded (zero pages) before anyone can claim it again.
//
// Threads: one accepts on every VM's socket; one per connected QEMU turns
// its doorbells into ring wake-ups and watches the slot table; one per
// session dispatches its commands.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "ipc/ivshmem_layout.h"
#include "ipc/socket.h"
#include "microlake/server.h"

namespace malv::microlake {

struct IvshmemVm {
  std::string vm_name;
  std::string socket_path;
};

struct IvshmemServerOptions {
  std::vector<IvshmemVm> vms;
  // Each VM's region: `slots` sessions at once, each with these rings and
  // arena. QEMU's device needs vectors >= 1 + slots.
  std::uint32_t slots = 4;
  std::uint32_t sq_entries = 4096;
  std::uint32_t cq_entries = 8192;
  std::uint64_t arena_bytes = 16ull << 20;
  SessionLimits limits;
  // As ServerOptions::admit; called on the session's own thread with
  // via = kIvshmem, the VM's name and QEMU's credentials as the peer.
  std::function<Result<Admission>(const HelloInfo&)> admit;
};

class IvshmemServer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<IvshmemServer>> start(accel::Backend& backend,
                                                                    IvshmemServerOptions options);
  ~IvshmemServer();
  IvshmemServer(const IvshmemServer&) = delete;
  IvshmemServer& operator=(const IvshmemServer&) = delete;

  // Closes the sockets, ends every session, removes the socket files.
  void stop();

  // The doorbell vectors QEMU's device should have: 1 + slots.
  std::uint32_t vectors() const { return options_.slots + 1; }
  const ipc::IvshmemLayout& layout() const { return layout_; }

  struct VmStatus {
    std::string vm;
    std::string socket_path;
    bool connected = false;  // a QEMU is attached
    pid_t qemu_pid = 0;
    std::uint32_t sessions = 0;
    std::uint64_t connections = 0;  // QEMUs attached since the host started
    std::uint64_t refused = 0;      // second QEMUs turned away
  };
  // nullopt when `vm` is not served over ivshmem.
  std::optional<VmStatus> status(const std::string& vm) const;
  std::vector<VmStatus> status() const;
  std::size_t session_count() const;
  // Prometheus families, one sample per VM served (malv_vm_ivshmem_*).
  std::string metrics_text() const;

 private:
  class Link;
  struct VmEntry {
    IvshmemVm config;
    std::unique_ptr<ipc::Socket> listener;
    std::shared_ptr<Link> link;                  // the QEMU attached now; guarded by mutex_
    std::uint64_t connections = 0, refused = 0;  // guarded by mutex_
  };

  IvshmemServer(accel::Backend& backend, IvshmemServerOptions options, ipc::IvshmemLayout layout);
  void accept_loop();
  void attach(VmEntry& vm, ipc::Socket socket);

  accel::Backend& backend_;
  IvshmemServerOptions options_;
  ipc::IvshmemLayout layout_;
  int stop_fd_ = -1;  // eventfd: wakes the accept loop
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<VmEntry>> vms_;
  std::vector<std::shared_ptr<Link>> retired_;  // detached links still tearing down; mutex_
  std::atomic<bool> stopping_{false};
};

}  // namespace malv::microlake
