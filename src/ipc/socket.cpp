#include "ipc/socket.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/vm_sockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace malv::ipc {

namespace {

// I/O errors: a receive/send timeout shows up as EAGAIN on a blocking socket.
Error io_error(std::string_view what, int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return Error(ErrorCode::kDeadlineExceeded, fmt::format("{}: timed out", what));
  }
  return errno_error(what, err);
}

Result<Socket> new_socket(int domain) {
  int fd = ::socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket", errno);
  return Socket(fd);
}

Status set_int_option(int fd, int level, int name, int value, std::string_view what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) return errno_error(what, errno);
  return ok_status();
}

constexpr int kListenBacklog = 128;

// A Unix or vsock address as bind() and connect() take it, and the text
// that names it in errors (the path; "vsock CID:PORT"). TCP addresses come
// from getaddrinfo() instead, one socket per candidate.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string name;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

Result<SocketAddress> unix_address(const std::string& path) {
  SocketAddress address;
  auto* addr = reinterpret_cast<sockaddr_un*>(&address.storage);
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("unix socket path must be 1 to {} bytes: '{}'",
                             sizeof addr->sun_path - 1, path));
  }
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  address.length = sizeof(sockaddr_un);
  address.name = path;
  return address;
}

SocketAddress vsock_address(std::uint32_t cid, std::uint32_t port) {
  SocketAddress address;
  auto* addr = reinterpret_cast<sockaddr_vm*>(&address.storage);
  addr->svm_family = AF_VSOCK;
  addr->svm_cid = cid;
  addr->svm_port = port;
  address.length = sizeof(sockaddr_vm);
  address.name = fmt::format("vsock {}:{}", cid, port);
  return address;
}

int socket_family(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  return ss.ss_family;
}

// Every listener, of any family: the error names the call that failed.
Status bind_and_listen(int fd, const sockaddr* addr, socklen_t len) {
  if (::bind(fd, addr, len) != 0) return errno_error("bind", errno);
  if (::listen(fd, kListenBacklog) != 0) return errno_error("listen", errno);
  return ok_status();
}

// Every connect, of any family.
Status connect_with_retry(int fd, const sockaddr* addr, socklen_t len) {
  while (::connect(fd, addr, len) != 0) {
    if (errno == EINTR) continue;
    return errno_error("connect", errno);
  }
  return ok_status();
}

// A Unix or vsock socket listening at, or connected to, `address`; a failed
// bind, listen or connect names the address.
Result<Socket> listen_at(const SocketAddress& address) {
  MALV_ASSIGN_OR_RETURN(Socket sock, new_socket(address.family()));
  MALV_TRY_CONTEXT(bind_and_listen(sock.fd(), address.get(), address.length), address.name);
  return sock;
}

Result<Socket> connect_to(const SocketAddress& address) {
  MALV_ASSIGN_OR_RETURN(Socket sock, new_socket(address.family()));
  MALV_TRY_CONTEXT(connect_with_retry(sock.fd(), address.get(), address.length), address.name);
  return sock;
}

struct AddrInfoList {
  addrinfo* head = nullptr;
  ~AddrInfoList() {
    if (head != nullptr) ::freeaddrinfo(head);
  }
};

Status resolve(const std::string& host, std::uint16_t port, bool passive, AddrInfoList* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  std::string service = std::to_string(port);
  int rc =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &out->head);
  if (rc != 0) {
    return Error(ErrorCode::kNotFound,
                 fmt::format("cannot resolve '{}': {}", host, ::gai_strerror(rc)));
  }
  return ok_status();
}

}  // namespace

Socket::~Socket() { close(); }

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// ------------------------------------------------------------------ Unix

Result<Socket> Socket::listen_unix(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(SocketAddress address, unix_address(path));
  // A previous server that died leaves its socket file behind; bind() would
  // fail with EADDRINUSE. Remove it, but only if it really is a socket.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  return listen_at(address);
}

Result<Socket> Socket::connect_unix(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(SocketAddress address, unix_address(path));
  return connect_to(address);
}

Result<std::pair<Socket, Socket>> Socket::unix_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return errno_error("socketpair", errno);
  }
  return std::pair<Socket, Socket>(Socket(fds[0]), Socket(fds[1]));
}

// ------------------------------------------------------------------- TCP

Result<Socket> Socket::listen_tcp(const std::string& host, std::uint16_t port) {
  AddrInfoList list;
  MALV_TRY(resolve(host, port, /*passive=*/true, &list));
  Error last(ErrorCode::kNotFound, fmt::format("no address for '{}'", host));
  for (addrinfo* ai = list.head; ai != nullptr; ai = ai->ai_next) {
    auto sock = new_socket(ai->ai_family);
    if (!sock.ok()) {
      last = std::move(sock).error();
      continue;
    }
    MALV_TRY(set_int_option(sock->fd_, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)"));
    auto listening = bind_and_listen(sock->fd_, ai->ai_addr, ai->ai_addrlen);
    if (!listening.ok()) {
      last = std::move(listening).error();
      continue;
    }
    return std::move(sock).value();
  }
  return std::move(last).with_context(fmt::format("listen on {}:{}", host, port));
}

Result<Socket> Socket::connect_tcp(const std::string& host, std::uint16_t port) {
  AddrInfoList list;
  MALV_TRY(resolve(host, port, /*passive=*/false, &list));
  Error last(ErrorCode::kNotFound, fmt::format("no address for '{}'", host));
  for (addrinfo* ai = list.head; ai != nullptr; ai = ai->ai_next) {
    auto sock = new_socket(ai->ai_family);
    if (!sock.ok()) {
      last = std::move(sock).error();
      continue;
    }
    auto connected = connect_with_retry(sock->fd_, ai->ai_addr, ai->ai_addrlen);
    if (!connected.ok()) {
      last = std::move(connected).error();
      continue;
    }
    MALV_TRY(set_int_option(sock->fd_, IPPROTO_TCP, TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)"));
    return std::move(sock).value();
  }
  return std::move(last).with_context(fmt::format("connect to {}:{}", host, port));
}

Result<std::uint16_t> Socket::local_port() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return errno_error("getsockname", errno);
  }
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  }
  return Error(ErrorCode::kFailedPrecondition, "local_port() on a socket that is not TCP");
}

// ----------------------------------------------------------------- vsock

Result<Socket> Socket::listen_vsock(std::uint32_t cid, std::uint32_t port) {
  return listen_at(vsock_address(cid, port));
}

Result<Socket> Socket::connect_vsock(std::uint32_t cid, std::uint32_t port) {
  return connect_to(vsock_address(cid, port));
}

bool Socket::vsock_supported() {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

std::optional<std::uint32_t> Socket::peer_vsock_cid() const {
  sockaddr_vm addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return std::nullopt;
  if (addr.svm_family != AF_VSOCK) return std::nullopt;
  return addr.svm_cid;
}

std::optional<std::string> Socket::peer_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  char text[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) == nullptr) return std::nullopt;
    return std::string(text);
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      // One peer is one address, whichever family its listener used.
      if (::inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof text) == nullptr) {
        return std::nullopt;
      }
      return std::string(text);
    }
    if (::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) == nullptr) return std::nullopt;
    return std::string(text);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- common

Result<Socket> Socket::accept() const {
  for (;;) {
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      Socket peer(fd);
      int family = socket_family(fd);
      if (family == AF_INET || family == AF_INET6) {
        MALV_TRY(set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)"));
      }
      return peer;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    // shutdown() on a listener makes accept fail with EINVAL: report that
    // as the listener going away.
    if (errno == EINVAL) return Error(ErrorCode::kDisconnected, "accept: listener shut down");
    return io_error("accept", errno);
  }
}

Status Socket::write_all(const void* data, std::size_t bytes) {
  iovec part{const_cast<void*>(data), bytes};
  return write_vectored(std::span<const iovec>(&part, 1));
}

Status Socket::write_vectored(std::span<const iovec> parts) {
  std::vector<iovec> left(parts.begin(), parts.end());
  std::size_t first = 0;
  while (first < left.size()) {
    if (left[first].iov_len == 0) {
      ++first;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = left.data() + first;
    msg.msg_iovlen = std::min<std::size_t>(left.size() - first, IOV_MAX);
    // sendmsg rather than writev: MSG_NOSIGNAL turns a closed peer into
    // EPIPE instead of killing the process with SIGPIPE.
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("send", errno);
    }
    auto sent = static_cast<std::size_t>(n);
    while (sent > 0 && first < left.size()) {
      std::size_t take = std::min(sent, left[first].iov_len);
      left[first].iov_base = static_cast<char*>(left[first].iov_base) + take;
      left[first].iov_len -= take;
      sent -= take;
      if (left[first].iov_len == 0) ++first;
    }
  }
  return ok_status();
}

namespace {

// A read that met the end of the stream after `done` of `bytes`.
Error peer_closed(std::size_t done, std::size_t bytes) {
  return Error(ErrorCode::kDisconnected,
               done == 0
                   ? std::string("peer closed the connection")
                   : fmt::format("peer closed the connection after {} of {} bytes", done, bytes));
}

}  // namespace

Status Socket::read_exact(void* data, std::size_t bytes) {
  auto* out = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    ssize_t n = ::recv(fd_, out + done, bytes - done, 0);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return peer_closed(done, bytes);
    if (errno == EINTR) continue;
    return io_error("recv", errno);
  }
  return ok_status();
}

Status Socket::read_exact(void* data, std::size_t bytes,
                          std::chrono::steady_clock::time_point deadline) {
  auto* out = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Error(ErrorCode::kDeadlineExceeded,
                   fmt::format("recv: timed out after {} of {} bytes", done, bytes));
    }
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 60000)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll", errno);
    }
    if (ready == 0) continue;  // the deadline is checked at the top
    // POLLHUP/POLLERR also land here: recv reports EOF or the error.
    ssize_t n = ::recv(fd_, out + done, bytes - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return peer_closed(done, bytes);
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    return io_error("recv", errno);
  }
  return ok_status();
}

Status Socket::send_fd(int fd, const void* data, std::size_t bytes) {
  if (bytes == 0) return Error(ErrorCode::kInvalidArgument, "send_fd needs at least one byte");
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  iovec iov{const_cast<void*>(data), bytes};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  ssize_t n;
  do {
    n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return io_error("sendmsg(SCM_RIGHTS)", errno);
  // The fd travelled with the first byte; the rest of the payload is plain data.
  auto sent = static_cast<std::size_t>(n);
  return write_all(static_cast<const char*>(data) + sent, bytes - sent);
}

Result<int> Socket::recv_fd(void* data, std::size_t bytes) {
  if (bytes == 0) return Error(ErrorCode::kInvalidArgument, "recv_fd needs at least one byte");
  // Room for a few fds: a peer that sends more than one gets the extras closed
  // rather than leaked or truncated silently.
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
  iovec iov{data, bytes};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return io_error("recvmsg", errno);

  int received = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (received < 0) {
        received = fd;
      } else {
        ::close(fd);
      }
    }
  }
  auto fail = [&](Error error) -> Result<int> {
    if (received >= 0) ::close(received);
    return error;
  };
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return fail(Error(ErrorCode::kDataLoss, "recvmsg: too many fds from peer (truncated)"));
  }
  if (n == 0) return fail(Error(ErrorCode::kDisconnected, "peer closed the connection"));
  auto got = static_cast<std::size_t>(n);
  if (got < bytes) {
    auto rest = read_exact(static_cast<char*>(data) + got, bytes - got);
    if (!rest.ok()) return fail(std::move(rest).error());
  }
  return received;
}

Result<Socket::PeerCredentials> Socket::peer_credentials() const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd_, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return errno_error("getsockopt(SO_PEERCRED)", errno);
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

Status Socket::set_timeouts(std::chrono::milliseconds recv, std::chrono::milliseconds send) {
  auto to_timeval = [](std::chrono::milliseconds ms) {
    timeval tv{};
    if (ms.count() > 0) {
      tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
      tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    }
    return tv;
  };
  timeval rtv = to_timeval(recv);
  timeval stv = to_timeval(send);
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof rtv) != 0) {
    return errno_error("setsockopt(SO_RCVTIMEO)", errno);
  }
  if (::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof stv) != 0) {
    return errno_error("setsockopt(SO_SNDTIMEO)", errno);
  }
  return ok_status();
}

void Socket::shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

}  // namespace malv::ipc
