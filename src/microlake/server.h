// Server: the Micro-LAKE front door. It listens on a Unix socket (and
// optionally TCP and vsock), performs the hello handshake with each guest,
// authenticates it, and runs its session on a thread of its own until the
// guest leaves.
//
//   ServerOptions options;
//   options.unix_path = "/run/malv/malv.sock";
//   MALV_ASSIGN_OR_RETURN(auto server, Server::start(*backend, options));
//   ...
//   server->stop();  // or destroy it: closes listeners, ends every session
//
// A hello that is malformed, of another protocol version, or refused by the
// authenticator gets a HelloReply with the error code and a message, and the
// connection is closed; nothing else is allocated for it.
//
// Before its hello is through a connection is unauthenticated, so what it
// may hold is bounded: the whole hello must arrive within hello_timeout
// (however slowly the bytes trickle in), and at most max_pending_per_peer
// such connections per peer (a uid on Unix, an IP address on TCP, a CID on
// vsock) and max_pending in all may be waiting at once. A connection over
// either cap is closed as soon as it is accepted, with a log line naming
// the cap; admitted sessions do not count.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "accel/backend.h"
#include "ipc/socket.h"
#include "microlake/endpoint.h"
#include "microlake/session.h"

namespace malv::microlake {

// What the host knows about a connecting guest when it decides to admit it.
struct HelloInfo {
  std::string vm_name;
  std::string credential;
  // kIvshmem: a slot of a VM's ivshmem region (microlake/ivshmem_server.h);
  // the socket QEMU connected on, not a credential, says which VM it is.
  enum class Via { kUnix, kTcp, kVsock, kIvshmem } via = Via::kUnix;
  // Unix: the guest process; ivshmem: the VM's QEMU process.
  std::optional<ipc::Socket::PeerCredentials> peer;
  std::optional<std::uint32_t> vsock_cid;  // vsock only
  // The arena the session will get (host memory, for the VM's quota).
  std::uint64_t arena_bytes = 0;
};

// What the host grants an admitted guest: the accelerator as its session
// will see it (a per-VM view with quotas and scheduling; null: the shared
// device, unaccounted) and the session's handle limits.
struct Admission {
  std::unique_ptr<accel::Backend> backend;
  SessionLimits limits;
  SessionServices services;
};

struct ServerOptions {
  std::string unix_path;                // required
  std::optional<std::string> tcp_host;  // e.g. "127.0.0.1"
  std::uint16_t tcp_port = 0;           // 0: ephemeral (see Server::tcp_port())
  std::optional<std::uint32_t> vsock_port;
  std::uint32_t sq_entries = 4096;
  std::uint32_t cq_entries = 8192;
  std::uint64_t default_arena_bytes = 64ull << 20;
  std::uint64_t max_arena_bytes = 256ull << 20;
  SessionLimits limits;
  // Pre-authentication bounds (see the top of this file and docs/protocol.md).
  std::chrono::milliseconds hello_timeout{5000};
  std::uint32_t max_pending_per_peer = 8;
  std::uint32_t max_pending = 64;
  // Admission control; an error refuses the guest with that error. Default:
  // admit every guest onto the shared backend (development hosts and tests;
  // `malv serve` admits registered VMs with their tokens).
  std::function<Result<Admission>(const HelloInfo&)> admit;
};

class Server {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Server>> start(accel::Backend& backend,
                                                             ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Closes the listeners and ends every session; returns when all are gone.
  void stop();

  std::uint16_t tcp_port() const { return tcp_port_; }
  const std::string& unix_path() const { return options_.unix_path; }
  // Sessions admitted and not yet fully torn down.
  std::size_t session_count() const;

 private:
  Server(accel::Backend& backend, ServerOptions options);
  void accept_loop(ipc::Socket* listener, HelloInfo::Via via);
  struct Connection;
  void serve_connection(Connection& connection, ipc::Socket socket, HelloInfo::Via via);
  Result<std::unique_ptr<Endpoint>> admit(ipc::Socket& socket, HelloInfo::Via via);
  void reap_finished();
  // Who a connection counts against for max_pending_per_peer, e.g. "uid 1000".
  static std::string peer_key(const ipc::Socket& socket, HelloInfo::Via via);
  // Takes a pending slot for peer, or says which cap is full; mutex_ held.
  std::optional<std::string> take_pending_slot(const std::string& peer);
  void release_pending_slot(Connection& connection);

  struct Connection {
    std::thread thread;
    std::atomic<bool> finished{false};  // the thread is done, its session torn down
    bool admitted = false;              // passed the hello; guarded by mutex_
    Endpoint* endpoint = nullptr;       // set while its session runs; guarded by mutex_
    std::string peer;                   // its key in pending_per_peer_
    bool pending = false;               // holds a pending slot; guarded by mutex_
    int hello_fd = -1;  // its socket while the hello runs (stop() shuts it); guarded by mutex_
  };

  accel::Backend& backend_;
  ServerOptions options_;
  std::uint16_t tcp_port_ = 0;
  std::vector<std::unique_ptr<ipc::Socket>> listeners_;
  std::vector<std::thread> acceptors_;
  mutable std::mutex mutex_;
  std::list<Connection> connections_;  // guarded by mutex_
  // Connections that have not finished their hello, per peer and in all;
  // guarded by mutex_.
  std::map<std::string, std::uint32_t> pending_per_peer_;
  std::uint32_t pending_total_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace malv::microlake
