#include "ipc/socket.h"

#include <gtest/gtest.h>
#include <linux/vm_sockets.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "ipc/shared_region.h"

namespace malv::ipc {
namespace {

using namespace std::chrono_literals;

std::string temp_socket_path(const char* tag) {
  return "/tmp/malv-ipc-test-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

struct UnixConnection {
  Socket listener, client, server;
};

UnixConnection connect_over_path(const std::string& path) {
  UnixConnection c;
  auto listener = Socket::listen_unix(path);
  EXPECT_TRUE(listener.ok()) << listener.error().to_string();
  if (!listener.ok()) return c;
  c.listener = std::move(listener).value();
  auto client = Socket::connect_unix(path);
  EXPECT_TRUE(client.ok()) << client.error().to_string();
  if (!client.ok()) return c;
  c.client = std::move(client).value();
  auto server = c.listener.accept();
  EXPECT_TRUE(server.ok()) << server.error().to_string();
  if (server.ok()) c.server = std::move(server).value();
  return c;
}

TEST(Socket, UnixSocketPassesAMemfdThatTheReceiverCanMap) {
  const std::string path = temp_socket_path("fd");
  UnixConnection c = connect_over_path(path);
  ASSERT_TRUE(c.server.valid() && c.client.valid());

  auto region = SharedRegion::create("malv-fd-test", 4096);
  ASSERT_TRUE(region.ok());
  std::memcpy(region->data(), "from the host", 14);
  std::uint64_t size = region->size();
  ASSERT_TRUE(c.server.send_fd(region->fd(), &size, sizeof size).ok());

  std::uint64_t told = 0;
  auto fd = c.client.recv_fd(&told, sizeof told);
  ASSERT_TRUE(fd.ok()) << fd.error().to_string();
  ASSERT_GE(*fd, 0);
  EXPECT_EQ(told, 4096u);
  auto mapped = SharedRegion::map_fd(*fd, told);
  ASSERT_TRUE(mapped.ok()) << mapped.error().to_string();
  EXPECT_STREQ(reinterpret_cast<const char*>(mapped->data()), "from the host");
  ::unlink(path.c_str());
}

TEST(Socket, RecvFdWithoutAnFdReturnsMinusOneAndTheData) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  std::uint32_t value = 1234;
  ASSERT_TRUE(pair->first.write_all(&value, sizeof value).ok());
  std::uint32_t got = 0;
  auto fd = pair->second.recv_fd(&got, sizeof got);
  ASSERT_TRUE(fd.ok());
  EXPECT_EQ(*fd, -1);
  EXPECT_EQ(got, 1234u);
}

TEST(Socket, PeerCredentialsNameOurOwnProcess) {
  const std::string path = temp_socket_path("cred");
  UnixConnection c = connect_over_path(path);
  ASSERT_TRUE(c.server.valid());
  auto cred = c.server.peer_credentials();
  ASSERT_TRUE(cred.ok()) << cred.error().to_string();
  EXPECT_EQ(cred->pid, ::getpid());
  EXPECT_EQ(cred->uid, ::getuid());
  EXPECT_EQ(cred->gid, ::getgid());
  ::unlink(path.c_str());
}

TEST(Socket, ListeningAgainReplacesAStaleSocketFile) {
  const std::string path = temp_socket_path("stale");
  {
    auto first = Socket::listen_unix(path);
    ASSERT_TRUE(first.ok());
  }  // closed, but the socket file stays behind as after a crash
  auto second = Socket::listen_unix(path);
  ASSERT_TRUE(second.ok()) << second.error().to_string();
  EXPECT_TRUE(Socket::connect_unix(path).ok());
  ::unlink(path.c_str());
}

TEST(Socket, ConnectingToNothingIsAnError) {
  auto sock = Socket::connect_unix(temp_socket_path("nobody"));
  EXPECT_FALSE(sock.ok());
}

TEST(Socket, ReadExactReportsDisconnectedWhenThePeerCloses) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  Socket reader = std::move(pair->first);
  {
    Socket writer = std::move(pair->second);
    ASSERT_TRUE(writer.write_all("abc", 3).ok());
  }
  char buf[8];
  auto read = reader.read_exact(buf, sizeof buf);  // only 3 of 8 bytes ever come
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code(), ErrorCode::kDisconnected);
  auto again = reader.read_exact(buf, 1);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kDisconnected);
}

TEST(Socket, WritingToAClosedPeerIsDisconnectedNotSigpipe) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  Socket writer = std::move(pair->first);
  { Socket gone = std::move(pair->second); }
  auto written = writer.write_all("x", 1);
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.error().code(), ErrorCode::kDisconnected);
}

TEST(Socket, ShutdownWakesABlockedReader) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  Status result = ok_status();
  std::thread reader([&] {
    char c;
    result = pair->first.read_exact(&c, 1);
  });
  std::this_thread::sleep_for(20ms);
  pair->first.shutdown();
  reader.join();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ErrorCode::kDisconnected);
}

TEST(Socket, ReceiveTimeoutIsDeadlineExceeded) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  ASSERT_TRUE(pair->first.set_timeouts(20ms, 20ms).ok());
  char c;
  auto read = pair->first.read_exact(&c, 1);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code(), ErrorCode::kDeadlineExceeded);
}

TEST(Socket, ReadWithADeadlineBoundsTheWholeReadNotEachByte) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  // A byte every 50 ms: each recv succeeds quickly, but 64 bytes take ~3 s.
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    for (int i = 0; i < 64 && !stop.load(); ++i) {
      if (!pair->second.write_all("x", 1).ok()) return;
      std::this_thread::sleep_for(50ms);
    }
  });
  char buffer[64];
  const auto start = std::chrono::steady_clock::now();
  auto read = pair->first.read_exact(buffer, sizeof buffer, start + 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  stop.store(true);
  trickler.join();
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_LT(took, 2500ms);  // well before the 64th byte
}

TEST(Socket, ReadWithADeadlineCompletesWhenEverythingArrivesInTime) {
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  ASSERT_TRUE(pair->second.write_all("ping", 4).ok());
  char got[4];
  ASSERT_TRUE(pair->first.read_exact(got, 4, std::chrono::steady_clock::now() + 5s).ok());
  EXPECT_EQ(std::string(got, 4), "ping");
  pair->second.shutdown();
  auto eof = pair->first.read_exact(got, 4, std::chrono::steady_clock::now() + 5s);
  ASSERT_FALSE(eof.ok());
  EXPECT_EQ(eof.error().code(), ErrorCode::kDisconnected);
}

TEST(Socket, TcpPeerAddressIsTheClientsAddress) {
  auto listener = Socket::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.error().to_string();
  auto client = Socket::connect_tcp("127.0.0.1", *listener->local_port());
  ASSERT_TRUE(client.ok()) << client.error().to_string();
  auto server = listener->accept();
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->peer_address(), std::optional<std::string>("127.0.0.1"));
  auto pair = Socket::unix_pair();
  ASSERT_TRUE(pair.ok());
  EXPECT_FALSE(pair->first.peer_address().has_value());
}

TEST(Socket, TcpLoopbackRoundTrip) {
  auto listener = Socket::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.error().to_string();
  auto port = listener->local_port();
  ASSERT_TRUE(port.ok());
  ASSERT_NE(*port, 0);
  auto client = Socket::connect_tcp("127.0.0.1", *port);
  ASSERT_TRUE(client.ok()) << client.error().to_string();
  auto server = listener->accept();
  ASSERT_TRUE(server.ok()) << server.error().to_string();

  std::string big(1 << 20, 'q');  // larger than a socket buffer: partial writes happen
  std::thread sender([&] { EXPECT_TRUE(client->write_all(big.data(), big.size()).ok()); });
  std::string got(big.size(), '\0');
  ASSERT_TRUE(server->read_exact(got.data(), got.size()).ok());
  sender.join();
  EXPECT_EQ(got, big);

  ASSERT_TRUE(server->write_all("pong", 4).ok());
  char reply[4];
  ASSERT_TRUE(client->read_exact(reply, 4).ok());
  EXPECT_EQ(std::string(reply, 4), "pong");
  EXPECT_FALSE(server->peer_vsock_cid().has_value());
}

TEST(Socket, VsockLoopbackRoundTrip) {
  if (!Socket::vsock_supported()) {
    GTEST_SKIP() << "AF_VSOCK is not available on this machine (no vsock transport loaded); "
                    "vsock channels cannot be tested here";
  }
  auto listener = Socket::listen_vsock(VMADDR_CID_ANY, 0x4d414c56);
  if (!listener.ok()) {
    GTEST_SKIP() << "cannot listen on vsock here: " << listener.error().to_string();
  }
  auto client = Socket::connect_vsock(VMADDR_CID_LOCAL, 0x4d414c56);
  if (!client.ok()) {
    GTEST_SKIP() << "vsock loopback (vsock_loopback module) unavailable: "
                 << client.error().to_string();
  }
  auto server = listener->accept();
  ASSERT_TRUE(server.ok()) << server.error().to_string();
  ASSERT_TRUE(client->write_all("ping", 4).ok());
  char got[4];
  ASSERT_TRUE(server->read_exact(got, 4).ok());
  EXPECT_EQ(std::string(got, 4), "ping");
  EXPECT_TRUE(server->peer_vsock_cid().has_value());
}

}  // namespace
}  // namespace malv::ipc
