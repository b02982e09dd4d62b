// Socket: a move-only stream socket (Unix, TCP or vsock), the transport
// under every channel's handshake and, on TCP/vsock, under its frames.
//
// Set-up is in static factories that return Result, so a Socket that exists
// is open. The destructor closes it. I/O is blocking; set_timeouts() bounds
// it, and shutdown() from another thread wakes a blocked reader.
//
//   MALV_ASSIGN_OR_RETURN(Socket listener, Socket::listen_unix("/run/malv.sock"));
//   MALV_ASSIGN_OR_RETURN(Socket peer, listener.accept());
//   MALV_ASSIGN_OR_RETURN(auto cred, peer.peer_credentials());
//   MALV_TRY(peer.read_exact(&hello, sizeof hello));
//   MALV_TRY(peer.send_fd(region.fd(), &reply, sizeof reply));
//
// Errors: an orderly close by the peer is kDisconnected (as are EPIPE and
// ECONNRESET); a timeout set with set_timeouts(), or a deadline passed to
// read_exact(), is kDeadlineExceeded.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "malv/result.h"

namespace malv::ipc {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}  // adopts fd
  ~Socket();
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Removes a stale socket file at path first (only if it is a socket);
  // backlog 128.
  [[nodiscard]] static Result<Socket> listen_unix(const std::string& path);
  [[nodiscard]] static Result<Socket> connect_unix(const std::string& path);
  // host is a name or numeric address; port 0 = ephemeral (see local_port()).
  [[nodiscard]] static Result<Socket> listen_tcp(const std::string& host, std::uint16_t port);
  [[nodiscard]] static Result<Socket> connect_tcp(const std::string& host, std::uint16_t port);
  [[nodiscard]] static Result<Socket> listen_vsock(std::uint32_t cid, std::uint32_t port);
  [[nodiscard]] static Result<Socket> connect_vsock(std::uint32_t cid, std::uint32_t port);
  // A connected pair of Unix stream sockets (socketpair), for tests and for
  // a host that starts its guest as a child process.
  [[nodiscard]] static Result<std::pair<Socket, Socket>> unix_pair();
  // Can an AF_VSOCK socket be created here?
  static bool vsock_supported();

  [[nodiscard]] Result<Socket> accept() const;             // TCP_NODELAY on TCP peers
  [[nodiscard]] Result<std::uint16_t> local_port() const;  // TCP only

  // Whole buffers or an error; EINTR and partial transfers are handled.
  [[nodiscard]] Status write_all(const void* data, std::size_t bytes);
  [[nodiscard]] Status write_vectored(std::span<const iovec> parts);
  [[nodiscard]] Status read_exact(void* data, std::size_t bytes);  // kDisconnected on EOF
  // The same, but the whole read must be done by deadline: a peer that
  // trickles bytes cannot stretch it (SO_RCVTIMEO bounds each recv alone).
  // kDeadlineExceeded once it passes.
  [[nodiscard]] Status read_exact(void* data, std::size_t bytes,
                                  std::chrono::steady_clock::time_point deadline);

  // Sends fd (SCM_RIGHTS) together with bytes (>= 1) of payload.
  [[nodiscard]] Status send_fd(int fd, const void* data, std::size_t bytes);
  // Fills data exactly; returns the fd that came with it (ours to close), or
  // -1 when the peer sent none.
  [[nodiscard]] Result<int> recv_fd(void* data, std::size_t bytes);

  struct PeerCredentials {
    pid_t pid;
    uid_t uid;
    gid_t gid;
  };
  [[nodiscard]] Result<PeerCredentials> peer_credentials() const;  // SO_PEERCRED (Unix only)
  std::optional<std::uint32_t> peer_vsock_cid() const;             // nullopt unless vsock
  // The peer's IP address as text ("127.0.0.1", "::1"; an IPv4-mapped IPv6
  // address in its IPv4 form); nullopt unless TCP.
  std::optional<std::string> peer_address() const;

  // Zero means no limit.
  [[nodiscard]] Status set_timeouts(std::chrono::milliseconds recv, std::chrono::milliseconds send);
  // shutdown(SHUT_RDWR): the peer sees EOF and a reader blocked in another
  // thread returns kDisconnected. The fd stays open until destruction.
  void shutdown();

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership of the fd.
  int release() { return std::exchange(fd_, -1); }

 private:
  void close();
  int fd_ = -1;
};

}  // namespace malv::ipc
