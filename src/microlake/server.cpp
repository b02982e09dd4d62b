#include "microlake/server.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "base/thread_priority.h"
#include "ipc/channel_layout.h"
#include "microlake/hello_checks.h"
#include "microlake/shm_endpoint.h"
#include "microlake/stream_endpoint.h"

namespace malv::microlake {
namespace {

using namespace std::chrono_literals;

}  // namespace

Server::Server(accel::Backend& backend, ServerOptions options)
    : backend_(backend), options_(std::move(options)) {}

Result<std::unique_ptr<Server>> Server::start(accel::Backend& backend, ServerOptions options) {
  if (options.unix_path.empty()) {
    return Error(ErrorCode::kInvalidArgument, "server needs a Unix socket path");
  }
  if (options.hello_timeout <= 0ms || options.max_pending == 0 ||
      options.max_pending_per_peer == 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "hello_timeout, max_pending and max_pending_per_peer must be positive");
  }
  MALV_TRY_CONTEXT(ipc::ChannelLayout::compute(options.sq_entries, options.cq_entries,
                                               options.default_arena_bytes),
                   "server ring and arena sizes");
  std::unique_ptr<Server> server(new Server(backend, std::move(options)));
  const ServerOptions& o = server->options_;
  MALV_ASSIGN_OR_RETURN(ipc::Socket unix_listener, ipc::Socket::listen_unix(o.unix_path));
  server->listeners_.push_back(std::make_unique<ipc::Socket>(std::move(unix_listener)));
  std::vector<HelloInfo::Via> vias{HelloInfo::Via::kUnix};
  if (o.tcp_host) {
    MALV_ASSIGN_OR_RETURN(ipc::Socket tcp, ipc::Socket::listen_tcp(*o.tcp_host, o.tcp_port));
    MALV_ASSIGN_OR_RETURN(server->tcp_port_, tcp.local_port());
    server->listeners_.push_back(std::make_unique<ipc::Socket>(std::move(tcp)));
    vias.push_back(HelloInfo::Via::kTcp);
  }
  if (o.vsock_port) {
    constexpr std::uint32_t kAnyCid = 0xffffffffu;  // VMADDR_CID_ANY
    MALV_ASSIGN_OR_RETURN(ipc::Socket vsock, ipc::Socket::listen_vsock(kAnyCid, *o.vsock_port));
    server->listeners_.push_back(std::make_unique<ipc::Socket>(std::move(vsock)));
    vias.push_back(HelloInfo::Via::kVsock);
  }
  for (std::size_t i = 0; i < server->listeners_.size(); ++i) {
    server->acceptors_.emplace_back([raw = server.get(), listener = server->listeners_[i].get(),
                                     via = vias[i]] { raw->accept_loop(listener, via); });
  }
  log::info("microlake", "listening on {}{}", o.unix_path,
            o.tcp_host ? fmt::format(" and tcp {}:{}", *o.tcp_host, server->tcp_port_) : "");
  return server;
}

Server::~Server() { stop(); }

void Server::stop() {
  stopping_.store(true, std::memory_order_release);
  for (auto& listener : listeners_) listener->shutdown();
  for (auto& acceptor : acceptors_) {
    if (acceptor.joinable()) acceptor.join();
  }
  {
    std::lock_guard lock(mutex_);
    for (Connection& c : connections_) {
      if (c.endpoint) c.endpoint->stop();
      if (c.hello_fd >= 0) ::shutdown(c.hello_fd, SHUT_RDWR);  // wakes its hello read
    }
  }
  std::list<Connection> all;
  {
    std::lock_guard lock(mutex_);
    all.splice(all.begin(), connections_);
  }
  for (Connection& c : all) {
    if (c.thread.joinable()) c.thread.join();
  }
  if (!listeners_.empty()) ::unlink(options_.unix_path.c_str());
  listeners_.clear();
}

std::size_t Server::session_count() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const Connection& c : connections_) {
    n += c.admitted && !c.finished.load(std::memory_order_acquire) ? 1 : 0;
  }
  return n;
}

void Server::reap_finished() {
  std::list<Connection> done;
  {
    std::lock_guard lock(mutex_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if (it->finished.load(std::memory_order_acquire)) done.splice(done.end(), connections_, it);
      it = next;
    }
  }
  for (Connection& c : done) c.thread.join();
}

void Server::accept_loop(ipc::Socket* listener, HelloInfo::Via via) {
  while (!stopping_.load(std::memory_order_acquire)) {
    Result<ipc::Socket> accepted = listener->accept();
    if (!accepted.ok()) {
      if (stopping_.load(std::memory_order_acquire)) return;
      log::warn("microlake", "accept failed: {}", accepted.error().to_string());
      std::this_thread::sleep_for(10ms);
      continue;
    }
    reap_finished();
    ipc::Socket socket = std::move(accepted).value();
    std::string peer = peer_key(socket, via);
    std::lock_guard lock(mutex_);
    if (stopping_.load(std::memory_order_acquire)) return;
    if (std::optional<std::string> full = take_pending_slot(peer)) {
      // Closed at once (socket goes out of scope): no thread, no reply.
      log::warn("microlake", "connection from {} closed before its hello: {}", peer, *full);
      continue;
    }
    Connection& c = connections_.emplace_back();
    c.peer = std::move(peer);
    c.pending = true;
    c.thread = std::thread([this, &c, socket = std::move(socket), via]() mutable {
      // A dispatcher runs for microseconds at a time and is on every
      // command's path: it should not wait for a worker's kernel to yield.
      name_this_thread("malv-dispatch");
      request_short_slice(kShortSlice);
      serve_connection(c, std::move(socket), via);
      c.finished.store(true, std::memory_order_release);
    });
  }
}

std::string Server::peer_key(const ipc::Socket& socket, HelloInfo::Via via) {
  switch (via) {
    case HelloInfo::Via::kUnix: {
      Result<ipc::Socket::PeerCredentials> cred = socket.peer_credentials();
      return cred.ok() ? fmt::format("uid {}", cred->uid) : std::string("uid ?");
    }
    case HelloInfo::Via::kTcp: return "address " + socket.peer_address().value_or("?");
    case HelloInfo::Via::kVsock: {
      std::optional<std::uint32_t> cid = socket.peer_vsock_cid();
      return cid ? fmt::format("cid {}", *cid) : std::string("cid ?");
    }
    case HelloInfo::Via::kIvshmem: return "ivshmem";  // not served here
  }
  return "?";
}

std::optional<std::string> Server::take_pending_slot(const std::string& peer) {
  if (pending_total_ >= options_.max_pending) {
    return fmt::format("{} connections are waiting for their hello, the cap in all (max_pending)",
                       pending_total_);
  }
  auto it = pending_per_peer_.try_emplace(peer, 0).first;
  if (it->second >= options_.max_pending_per_peer) {
    return fmt::format(
        "{} connections from it are waiting for their hello, the cap per peer "
        "(max_pending_per_peer)",
        it->second);
  }
  ++it->second;
  ++pending_total_;
  return std::nullopt;
}

void Server::release_pending_slot(Connection& connection) {
  if (!connection.pending) return;
  connection.pending = false;
  --pending_total_;
  auto it = pending_per_peer_.find(connection.peer);
  if (it != pending_per_peer_.end() && --it->second == 0) pending_per_peer_.erase(it);
}

void Server::serve_connection(Connection& connection, ipc::Socket socket, HelloInfo::Via via) {
  {
    std::lock_guard lock(mutex_);
    connection.hello_fd = socket.fd();
    if (stopping_.load(std::memory_order_acquire)) socket.shutdown();
  }
  Result<std::unique_ptr<Endpoint>> endpoint = admit(socket, via);
  {
    // The hello is over, one way or the other: the slot goes to the next.
    std::lock_guard lock(mutex_);
    connection.hello_fd = -1;
    release_pending_slot(connection);
  }
  if (!endpoint.ok()) {
    log::warn("microlake", "guest refused: {}", endpoint.error().to_string());
    const wire::HelloReply refusal = refusal_reply(endpoint.error());
    (void)socket.write_all(&refusal, sizeof(refusal));
    return;
  }
  Endpoint* raw = endpoint.value().get();
  {
    std::lock_guard lock(mutex_);
    connection.endpoint = raw;
    connection.admitted = true;
    if (stopping_.load(std::memory_order_acquire)) raw->stop();
  }
  raw->run();
  {
    std::lock_guard lock(mutex_);
    connection.endpoint = nullptr;
  }
  endpoint.value().reset();  // tears the session down: every resource released
}

Result<std::unique_ptr<Endpoint>> Server::admit(ipc::Socket& socket, HelloInfo::Via via) {
  // The deadline is for the whole hello, so a guest that trickles it a byte
  // at a time is cut off like one that sends nothing. A refusal's send is
  // bounded by the same time.
  const auto deadline = std::chrono::steady_clock::now() + options_.hello_timeout;
  MALV_TRY(socket.set_timeouts(0ms, options_.hello_timeout));
  wire::HelloRequest hello{};
  MALV_TRY_CONTEXT(socket.read_exact(&hello, sizeof(hello), deadline),
                   fmt::format("reading hello (due within {} ms)", options_.hello_timeout.count()));
  MALV_TRY(check_hello(hello, via));
  HelloInfo info;
  info.vm_name = bounded_string(hello.vm_name, sizeof(hello.vm_name));
  info.credential = bounded_string(hello.credential, sizeof(hello.credential));
  info.via = via;
  if (via == HelloInfo::Via::kUnix) {
    MALV_ASSIGN_OR_RETURN(info.peer, socket.peer_credentials());
  }
  if (via == HelloInfo::Via::kVsock) info.vsock_cid = socket.peer_vsock_cid();
  std::uint64_t arena = hello.arena_bytes == 0 ? options_.default_arena_bytes : hello.arena_bytes;
  arena = std::min(arena, options_.max_arena_bytes);
  arena = std::max<std::uint64_t>(arena, ipc::kMinArenaBytes);
  arena = (arena + ipc::kChannelPageBytes - 1) / ipc::kChannelPageBytes * ipc::kChannelPageBytes;
  info.arena_bytes = arena;
  Admission admission;
  admission.limits = options_.limits;
  if (options_.admit) {
    MALV_ASSIGN_OR_RETURN(admission, options_.admit(info));
  }
  MALV_TRY(socket.set_timeouts(0ms, 0ms));

  wire::HelloReply reply{};
  reply.magic = wire::kHelloMagic;
  reply.version = wire::kProtocolVersion;
  reply.arena_bytes = arena;
  reply.session_id = next_session_id();

  if (static_cast<wire::Transport>(hello.transport) == wire::Transport::kStream) {
    MALV_TRY(socket.write_all(&reply, sizeof(reply)));
    MALV_ASSIGN_OR_RETURN(auto endpoint,
                          StreamEndpoint::create(
                              info.vm_name, std::move(socket), arena, options_.cq_entries, backend_,
                              std::move(admission.backend), admission.limits, admission.services));
    return std::unique_ptr<Endpoint>(std::move(endpoint));
  }
  MALV_ASSIGN_OR_RETURN(
      ipc::ChannelLayout layout,
      ipc::ChannelLayout::compute(options_.sq_entries, options_.cq_entries, arena));
  MALV_ASSIGN_OR_RETURN(
      ipc::SharedRegion region,
      ipc::SharedRegion::create("malv-channel-" + info.vm_name, layout.total_bytes));
  MALV_ASSIGN_OR_RETURN(ipc::ChannelView view, ipc::ChannelView::over(region, layout));
  ipc::initialize_control_block(view, layout);
  reply.shm_bytes = layout.total_bytes;
  reply.sq_entries = layout.sq_entries;
  reply.cq_entries = layout.cq_entries;
  reply.arena_offset = layout.arena_offset;
  MALV_TRY(socket.send_fd(region.fd(), &reply, sizeof(reply)));
  MALV_ASSIGN_OR_RETURN(
      auto endpoint,
      ShmEndpoint::create(info.vm_name, std::move(socket), std::move(region), layout, backend_,
                          std::move(admission.backend), admission.limits, admission.services));
  return std::unique_ptr<Endpoint>(std::move(endpoint));
}

}  // namespace malv::microlake
