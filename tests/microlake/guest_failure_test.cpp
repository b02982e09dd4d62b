// Guests that die, vanish mid-transfer or stop reading leave nothing behind
// and do not disturb other guests.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "guest/client_channel.h"
#include "host_fixture.h"
#include "proto/encoder.h"

namespace malv {
namespace {

using namespace std::chrono_literals;

class GuestFailure : public testing::HostFixture {};

// Runs fn in a child process that exits without any cleanup.
pid_t spawn(const std::function<void()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    fn();
    ::_exit(0);
  }
  return pid;
}

TEST_F(GuestFailure, GuestThatExitsWithWorkInFlightLeavesNothingBehind) {
  const std::string path = socket_path_;
  pid_t pid = spawn([path] {
    auto conn = guest::Connection::connect_unix(path, {.vm_name = "vm-doomed"});
    if (!conn.ok()) ::_exit(2);
    auto buf = (*conn)->allocate(8 << 20);
    auto stream = (*conn)->create_stream();
    if (!buf.ok() || !stream.ok()) ::_exit(3);
    for (int i = 0; i < 200; ++i) (void)stream->memset(*buf, 0, 1 << 20, 1);
    ::_exit(0);  // no synchronize, no frees
  });
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(wait_for_no_sessions(std::chrono::milliseconds(10000)));
  EXPECT_EQ(backend_->memory_in_use(), 0u);
}

TEST_F(GuestFailure, GuestKilledMidTransferIsCleanedUpAndOthersContinue) {
  auto survivor = connect("vm-survivor");
  ASSERT_TRUE(survivor);
  auto mine = survivor->allocate(1 << 20);
  auto stream = survivor->create_stream();
  ASSERT_TRUE(mine.ok() && stream.ok());
  const std::size_t before = backend_->memory_in_use();

  const std::string path = socket_path_;
  pid_t pid = spawn([path] {
    auto conn = guest::Connection::connect_unix(path, {.vm_name = "vm-victim"});
    if (!conn.ok()) ::_exit(2);
    auto buf = (*conn)->allocate(16 << 20);
    auto s = (*conn)->create_stream();
    std::vector<std::byte> data(16 << 20, std::byte{1});
    for (;;) (void)s->write(*buf, 0, data);
  });
  std::this_thread::sleep_for(150ms);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);

  auto deadline = std::chrono::steady_clock::now() + 1s;
  while (backend_->memory_in_use() != before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(backend_->memory_in_use(), before) << "victim's memory released within one second";

  std::vector<std::byte> data(1 << 20, std::byte{7}), back(1 << 20);
  ASSERT_TRUE(stream->write(*mine, 0, data).ok());
  ASSERT_TRUE(stream->read(*mine, 0, back).ok());
  EXPECT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(data, back);
}

TEST_F(GuestFailure, GuestThatStopsReadingCompletionsStallsOnlyItself) {
  auto socket = ipc::Socket::connect_unix(socket_path_);
  ASSERT_TRUE(socket.ok());
  auto channel = guest::open_shm_channel(std::move(socket).value(), {"vm-deaf", "", 0});
  ASSERT_TRUE(channel.ok()) << channel.error().to_string();
  // Submit nops until the submission ring is full, never reading completions.
  std::uint64_t submitted = 0;
  auto give_up = std::chrono::steady_clock::now() + 5s;
  int refused_in_a_row = 0;
  while (refused_in_a_row < 50 && std::chrono::steady_clock::now() < give_up) {
    wire::Command nop = proto::make_command(wire::Opcode::kNop, submitted + 1);
    auto pushed = (*channel)->try_submit(std::span(&nop, 1), {});
    ASSERT_TRUE(pushed.ok());
    if (pushed.value()) {
      ++submitted;
      refused_in_a_row = 0;
    } else {
      ++refused_in_a_row;
      std::this_thread::sleep_for(1ms);
    }
  }
  EXPECT_GT(submitted, 512u) << "the completion ring (512) filled, then the submission ring";

  auto other = connect("vm-fine");
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->ping().ok());

  // Nothing was lost: every command gets exactly one completion, in order.
  std::uint64_t completed = 0;
  std::array<wire::Completion, 64> batch;
  give_up = std::chrono::steady_clock::now() + 5s;
  while (completed < submitted && std::chrono::steady_clock::now() < give_up) {
    auto n = (*channel)->poll(batch);
    ASSERT_TRUE(n.ok());
    for (std::size_t i = 0; i < n.value(); ++i) EXPECT_EQ(batch[i].tag, ++completed);
    if (n.value() == 0) {
      ASSERT_TRUE((*channel)->wait(10ms, /*wake_tag=*/0).ok());
    }
  }
  EXPECT_EQ(completed, submitted);
}

TEST_F(GuestFailure, ManyGuestsComingAndGoingLeaveNoSessionsOrMemory) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, t] {
      for (int round = 0; round < 4; ++round) {
        auto conn = connect("vm-" + std::to_string(t));
        if (!conn) return;
        auto buf = conn->allocate(1 << 16);
        auto s = conn->create_stream();
        if (buf.ok() && s.ok()) {
          (void)s->memset(*buf, 0, 1 << 16, 3);
          (void)s->synchronize();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(wait_for_no_sessions(std::chrono::milliseconds(10000)));
  EXPECT_EQ(backend_->memory_in_use(), 0u);
}

}  // namespace
}  // namespace malv
