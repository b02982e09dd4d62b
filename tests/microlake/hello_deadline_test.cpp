// Before its hello is through a connection is unauthenticated: the host gives
// the whole hello one deadline (a guest cannot stretch it by trickling bytes)
// and caps how many such connections a peer, and everyone together, may hold.
// The bounds here are generous: they tell "cut off near the deadline" from
// "cut off much later, or never", not how quickly.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include "host_fixture.h"
#include "ipc/socket.h"

namespace malv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kHelloDeadline = 1000ms;
constexpr auto kMargin = 3000ms;

wire::HelloRequest valid_hello() {
  wire::HelloRequest hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kProtocolVersion;
  hello.transport = static_cast<std::uint16_t>(wire::Transport::kStream);
  std::snprintf(hello.vm_name, sizeof hello.vm_name, "%s", "vm-slow");
  return hello;
}

// Did the host close this connection (EOF or an error, after whatever reply
// it sent) within `limit`? Drains what arrives meanwhile.
bool closed_by_host_within(ipc::Socket& socket, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  char sink[256];
  while (Clock::now() < until) {
    pollfd p{socket.fd(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t n = ::recv(socket.fd(), sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
  return false;
}

// Sends a valid hello one byte every 400 ms (about a minute for all of it)
// and returns how long the host let it go on before it closed the
// connection, or nullopt if it was still open after deadline + margin.
std::optional<std::chrono::milliseconds> trickle_hello(ipc::Socket& socket) {
  const wire::HelloRequest hello = valid_hello();
  const auto* bytes = reinterpret_cast<const char*>(&hello);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < sizeof hello; ++i) {
    if (Clock::now() - start > kHelloDeadline + kMargin) return std::nullopt;
    if (::send(socket.fd(), bytes + i, 1, MSG_NOSIGNAL) != 1 ||
        closed_by_host_within(socket, 400ms)) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    }
  }
  ADD_FAILURE() << "the host read a hello that took longer than its deadline to arrive";
  return std::nullopt;
}

class HelloDeadline : public testing::HostFixture {
 protected:
  void customize(microlake::ServerOptions& options) override {
    options.hello_timeout = kHelloDeadline;
  }
};

TEST_F(HelloDeadline, HelloTrickledOverUnixIsCutOffAtTheDeadlineForTheWholeHello) {
  auto socket = ipc::Socket::connect_unix(socket_path_);
  ASSERT_TRUE(socket.ok()) << socket.error().to_string();
  auto took = trickle_hello(*socket);
  ASSERT_TRUE(took.has_value()) << "still connected after the deadline and a margin";
  EXPECT_LT(*took, kHelloDeadline + kMargin);
  // The host goes on admitting guests that say hello promptly.
  EXPECT_TRUE(connect());
}

TEST_F(HelloDeadline, HelloTrickledOverTcpIsCutOffAtTheDeadlineForTheWholeHello) {
  auto socket = ipc::Socket::connect_tcp("127.0.0.1", server_->tcp_port());
  ASSERT_TRUE(socket.ok()) << socket.error().to_string();
  auto took = trickle_hello(*socket);
  ASSERT_TRUE(took.has_value()) << "still connected after the deadline and a margin";
  EXPECT_LT(*took, kHelloDeadline + kMargin);
  EXPECT_TRUE(connect_tcp());
}

// Idle pre-hello connections: a long deadline, so that any close seen here
// comes from a cap, not from the deadline.
class PendingCaps : public testing::HostFixture {
 protected:
  void customize(microlake::ServerOptions& options) override {
    options.hello_timeout = 60s;
    options.max_pending_per_peer = 3;
    options.max_pending = 5;
  }

  std::vector<ipc::Socket> idle_unix(int count) {
    std::vector<ipc::Socket> idle;
    for (int i = 0; i < count; ++i) {
      auto s = ipc::Socket::connect_unix(socket_path_);
      EXPECT_TRUE(s.ok()) << s.error().to_string();
      if (s.ok()) idle.push_back(std::move(s).value());
    }
    return idle;
  }

  // A guest that says hello at once; retried for a while, since a slot
  // freed by a closed connection is released asynchronously.
  std::unique_ptr<guest::Connection> connect_eventually() {
    const auto until = Clock::now() + 5s;
    for (;;) {
      auto conn = guest::Connection::connect_unix(socket_path_, {.vm_name = "vm-late"});
      if (conn.ok() || Clock::now() > until) return conn.ok() ? std::move(conn).value() : nullptr;
      std::this_thread::sleep_for(50ms);
    }
  }
};

TEST_F(PendingCaps, IdleConnectionsBeyondThePerPeerCapAreClosedAtOnce) {
  std::vector<ipc::Socket> idle = idle_unix(3);
  ASSERT_EQ(idle.size(), 3u);
  for (ipc::Socket& s : idle) EXPECT_FALSE(closed_by_host_within(s, 200ms));
  for (int i = 0; i < 4; ++i) {
    auto extra = ipc::Socket::connect_unix(socket_path_);
    ASSERT_TRUE(extra.ok());
    EXPECT_TRUE(closed_by_host_within(*extra, 5000ms)) << "connection " << i << " over the cap";
  }
  // Meanwhile a guest from another peer (TCP, its own address) gets in...
  auto tcp_guest = connect_tcp();
  ASSERT_TRUE(tcp_guest);
  EXPECT_TRUE(tcp_guest->ping().ok());
  // ...and once the idle ones leave, so does one from the flooding peer.
  idle.clear();
  auto late = connect_eventually();
  ASSERT_TRUE(late) << "the per-peer slots were not given back";
  EXPECT_TRUE(late->ping().ok());
}

TEST_F(PendingCaps, IdleConnectionsBeyondTheCapInAllAreClosedAtOnce) {
  std::vector<ipc::Socket> idle = idle_unix(3);
  ASSERT_EQ(idle.size(), 3u);
  std::vector<ipc::Socket> idle_tcp;
  for (int i = 0; i < 2; ++i) {
    auto s = ipc::Socket::connect_tcp("127.0.0.1", server_->tcp_port());
    ASSERT_TRUE(s.ok());
    idle_tcp.push_back(std::move(s).value());
  }
  for (ipc::Socket& s : idle_tcp) EXPECT_FALSE(closed_by_host_within(s, 200ms));
  // Five wait in all: a sixth, from a peer under its own cap, is closed.
  auto extra = ipc::Socket::connect_tcp("127.0.0.1", server_->tcp_port());
  ASSERT_TRUE(extra.ok());
  EXPECT_TRUE(closed_by_host_within(*extra, 5000ms));
  idle.clear();
  idle_tcp.clear();
  auto late = connect_eventually();
  ASSERT_TRUE(late);
  EXPECT_TRUE(late->ping().ok());
}

TEST_F(PendingCaps, AdmittedSessionsDoNotCountAgainstTheCaps) {
  std::vector<std::unique_ptr<guest::Connection>> guests;
  for (int i = 0; i < 6; ++i) {
    guests.push_back(connect("vm-" + std::to_string(i)));
    ASSERT_TRUE(guests.back());
  }
  for (auto& g : guests) EXPECT_TRUE(g->ping().ok());
}

}  // namespace
}  // namespace malv
