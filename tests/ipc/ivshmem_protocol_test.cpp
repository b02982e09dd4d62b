// QEMU's ivshmem server protocol as both ends speak it over a socket pair:
// the server's set-up (send_ivshmem_setup) and a client reading it the way
// QEMU's ivshmem-doorbell device does (receive_ivshmem_setup).
#include "ipc/ivshmem_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "ipc/shared_region.h"

namespace malv::ipc {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kClientId = 1;
constexpr std::int64_t kHostId = 0;

struct EventFds {
  explicit EventFds(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) fds.push_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  }
  ~EventFds() {
    for (const int fd : fds) ::close(fd);
  }
  std::vector<int> fds;
};

struct Pair {
  Pair() {
    auto pair = Socket::unix_pair();
    EXPECT_TRUE(pair.ok()) << pair.error().to_string();
    if (pair.ok()) {
      server = std::move(pair->first);
      client = std::move(pair->second);
    }
  }
  Socket server, client;
};

// The server's end: a region and `vectors` doorbells each way.
struct ServerSide {
  explicit ServerSide(std::size_t vectors) : host(vectors), guest(vectors) {
    auto created = SharedRegion::create("malv-ivshmem-test", 1 << 16);
    EXPECT_TRUE(created.ok()) << created.error().to_string();
    if (created.ok()) region = std::move(created).value();
  }
  Status send(Socket& socket) {
    return send_ivshmem_setup(socket, kClientId, region.fd(), kHostId, host.fds, guest.fds);
  }
  SharedRegion region;
  EventFds host, guest;
};

std::uint64_t read_eventfd(int fd) {
  std::uint64_t value = 0;
  return ::read(fd, &value, sizeof(value)) == sizeof(value) ? value : 0;
}

void signal_eventfd(int fd, std::uint64_t value) {
  ASSERT_EQ(::write(fd, &value, sizeof(value)), static_cast<ssize_t>(sizeof(value)));
}

// Everything a client needs from the set-up works: its id, the shared
// memory (one memory through two mappings) and both directions of doorbells.
void expect_usable_setup(ServerSide& server, IvshmemClientSetup& setup, std::size_t vectors) {
  EXPECT_EQ(setup.own_id, kClientId);
  ASSERT_GE(setup.shm_fd, 0);
  ASSERT_EQ(setup.peers.count(kHostId), 1u);
  ASSERT_EQ(setup.peers.count(kClientId), 1u);
  ASSERT_EQ(setup.peers[kHostId].size(), vectors);
  ASSERT_EQ(setup.peers[kClientId].size(), vectors);

  struct stat st {};
  ASSERT_EQ(::fstat(setup.shm_fd, &st), 0);
  ASSERT_EQ(static_cast<std::size_t>(st.st_size), server.region.size());
  auto mine = SharedRegion::map_fd(::dup(setup.shm_fd), server.region.size());
  ASSERT_TRUE(mine.ok()) << mine.error().to_string();
  std::memcpy(server.region.data() + 100, "from the host", 14);
  EXPECT_STREQ(reinterpret_cast<const char*>(mine->data() + 100), "from the host");
  std::memcpy(mine->data() + 5000, "from the guest", 15);
  EXPECT_STREQ(reinterpret_cast<const char*>(server.region.data() + 5000), "from the guest");

  for (std::size_t v = 0; v < vectors; ++v) {
    // The client rings the host's vector v; the host reads it from its own fd.
    signal_eventfd(setup.peers[kHostId][v], 10 + v);
    EXPECT_EQ(read_eventfd(server.host.fds[v]), 10 + v) << "host vector " << v;
    // The host interrupts the client on its vector v.
    signal_eventfd(server.guest.fds[v], 20 + v);
    EXPECT_EQ(read_eventfd(setup.peers[kClientId][v]), 20 + v) << "client vector " << v;
  }
}

TEST(IvshmemProtocol, ClientReadsAsManyVectorsAsItAskedFor) {
  Pair pair;
  ServerSide server(5);
  ASSERT_TRUE(server.send(pair.server).ok());
  auto setup = receive_ivshmem_setup(pair.client, 5, Clock::now() + 5s);
  ASSERT_TRUE(setup.ok()) << setup.error().to_string();
  expect_usable_setup(server, *setup, 5);
}

TEST(IvshmemProtocol, ClientWithNoVectorCountLearnsItFromTheOtherPeer) {
  Pair pair;
  ServerSide server(3);
  ASSERT_TRUE(server.send(pair.server).ok());
  auto setup = receive_ivshmem_setup(pair.client, 0, Clock::now() + 5s);
  ASSERT_TRUE(setup.ok()) << setup.error().to_string();
  expect_usable_setup(server, *setup, 3);
}

TEST(IvshmemProtocol, ASetUpMovedToAnotherOwnerKeepsItsFdsOpen) {
  Pair pair;
  ServerSide server(2);
  ASSERT_TRUE(server.send(pair.server).ok());
  auto received = receive_ivshmem_setup(pair.client, 2, Clock::now() + 5s);
  ASSERT_TRUE(received.ok()) << received.error().to_string();
  IvshmemClientSetup moved = std::move(received).value();
  IvshmemClientSetup assigned;
  assigned = std::move(moved);
  EXPECT_EQ(moved.shm_fd, -1);
  expect_usable_setup(server, assigned, 2);
}

TEST(IvshmemProtocol, AServerSpeakingAnotherVersionIsRefused) {
  Pair pair;
  const std::int64_t version = 7;
  ASSERT_TRUE(pair.server.write_all(&version, sizeof(version)).ok());
  auto setup = receive_ivshmem_setup(pair.client, 1, Clock::now() + 5s);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kUnimplemented);
  EXPECT_THAT(setup.error().message(), HasSubstr("protocol 7"));
}

TEST(IvshmemProtocol, AClientTheServerTurnsAwayIsToldSo) {
  Pair pair;
  ASSERT_TRUE(send_ivshmem_refusal(pair.server).ok());
  auto setup = receive_ivshmem_setup(pair.client, 0, Clock::now() + 5s);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kAlreadyExists);
}

TEST(IvshmemProtocol, NoFdWhereTheSharedMemoryIsExpectedIsRefused) {
  Pair pair;
  for (const std::int64_t value : {kIvshmemProtocolVersion, kClientId, std::int64_t{-1}}) {
    ASSERT_TRUE(pair.server.write_all(&value, sizeof(value)).ok());
  }
  auto setup = receive_ivshmem_setup(pair.client, 1, Clock::now() + 5s);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kDataLoss);
  EXPECT_THAT(setup.error().message(), HasSubstr("shared memory"));
}

TEST(IvshmemProtocol, AnFdTaggedAsAPeerWhereTheSharedMemoryIsExpectedIsRefused) {
  Pair pair;
  ServerSide server(1);
  for (const std::int64_t value : {kIvshmemProtocolVersion, kClientId}) {
    ASSERT_TRUE(pair.server.write_all(&value, sizeof(value)).ok());
  }
  const std::int64_t peer = 3;
  ASSERT_TRUE(pair.server.send_fd(server.region.fd(), &peer, sizeof(peer)).ok());
  auto setup = receive_ivshmem_setup(pair.client, 1, Clock::now() + 5s);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kDataLoss);
}

TEST(IvshmemProtocol, AnOwnIdOutOfRangeIsRefused) {
  Pair pair;
  for (const std::int64_t value : {kIvshmemProtocolVersion, std::int64_t{1} << 20}) {
    ASSERT_TRUE(pair.server.write_all(&value, sizeof(value)).ok());
  }
  auto setup = receive_ivshmem_setup(pair.client, 1, Clock::now() + 5s);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kDataLoss);
}

TEST(IvshmemProtocol, TheDeadlinePassesWhenTheServerSaysNothing) {
  Pair pair;
  const auto start = Clock::now();
  auto setup = receive_ivshmem_setup(pair.client, 1, start + 200ms);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 3s);
}

TEST(IvshmemProtocol, TheDeadlineCoversTheWholeSetUpNotEachMessage) {
  Pair pair;
  ServerSide server(2);
  // Version, id and memory arrive, the vectors never do.
  for (const std::int64_t value : {kIvshmemProtocolVersion, kClientId}) {
    ASSERT_TRUE(pair.server.write_all(&value, sizeof(value)).ok());
  }
  const std::int64_t shm = -1;
  ASSERT_TRUE(pair.server.send_fd(server.region.fd(), &shm, sizeof(shm)).ok());
  const auto start = Clock::now();
  auto setup = receive_ivshmem_setup(pair.client, 2, start + 200ms);
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST(IvshmemProtocol, AServerThatHangsUpMidwayIsAnError) {
  Pair pair;
  for (const std::int64_t value : {kIvshmemProtocolVersion, kClientId}) {
    ASSERT_TRUE(pair.server.write_all(&value, sizeof(value)).ok());
  }
  pair.server.shutdown();
  const auto start = Clock::now();
  auto setup = receive_ivshmem_setup(pair.client, 1, start + 5s);
  ASSERT_FALSE(setup.ok());
  EXPECT_NE(setup.error().code(), ErrorCode::kDeadlineExceeded) << "a hang-up is not a wait";
  EXPECT_LT(Clock::now() - start, 2s);
}

TEST(IvshmemProtocol, APeerThatLeavesDuringTheSetUpIsForgotten) {
  Pair pair;
  ServerSide server(1);
  for (const std::int64_t value : {kIvshmemProtocolVersion, kClientId}) {
    ASSERT_TRUE(pair.server.write_all(&value, sizeof(value)).ok());
  }
  const std::int64_t shm = -1, gone = 9;
  ASSERT_TRUE(pair.server.send_fd(server.region.fd(), &shm, sizeof(shm)).ok());
  ASSERT_TRUE(pair.server.send_fd(server.host.fds[0], &gone, sizeof(gone)).ok());
  ASSERT_TRUE(pair.server.write_all(&gone, sizeof(gone)).ok());  // peer 9 left
  ASSERT_TRUE(pair.server.send_fd(server.host.fds[0], &kHostId, sizeof(kHostId)).ok());
  ASSERT_TRUE(pair.server.send_fd(server.guest.fds[0], &kClientId, sizeof(kClientId)).ok());
  auto setup = receive_ivshmem_setup(pair.client, 0, Clock::now() + 5s);
  ASSERT_TRUE(setup.ok()) << setup.error().to_string();
  EXPECT_EQ(setup->peers.count(gone), 0u);
  expect_usable_setup(server, *setup, 1);
}

}  // namespace
}  // namespace malv::ipc
