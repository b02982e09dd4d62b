// The vGPU service behind a real Micro-LAKE server: authentication, quotas
// as guests see them, and clean-up when guests die.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "malv/connection.h"
#include "microlake/server.h"
#include "vgpu/vgpu_service.h"

namespace malv::vgpu {
namespace {

using namespace std::chrono_literals;

class Isolation : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/malv-vgpu-test-" + std::to_string(::getpid()) + ".sock";
    ASSERT_TRUE(
        vgpu_.vms().create({.name = "vm-a", .token = "token-a", .memory_limit = 8 << 20}).ok());
    ASSERT_TRUE(
        vgpu_.vms().create({.name = "vm-b", .token = "token-b", .memory_limit = 8 << 20}).ok());
    // Oversubscribed: 2 MiB on the device, 16 MiB in all. Spills and fills
    // are paced to 1 GB/s (a 1 MiB copy takes 1 ms) and prefetch is on, so
    // copies are in flight most of the time.
    ASSERT_TRUE(vgpu_.vms()
                    .create({.name = "vm-spill",
                             .token = "token-spill",
                             .memory_limit = 2 << 20,
                             .virtual_memory_limit = 16 << 20})
                    .ok());
    vgpu_.set_memory_policies(&lru_, {.link_bytes_per_s = 1e9, .prefetch = true});
    microlake::ServerOptions options;
    options.unix_path = path_;
    options.default_arena_bytes = 4 << 20;
    // 64 guests of one uid say hello at once below: room for all of them
    // (the default cap per peer is a defence, tested in microlake_hello_test).
    options.max_pending_per_peer = 64;
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      MALV_ASSIGN_OR_RETURN(auto view, vgpu_.open_session(info.vm_name, info.credential));
      MALV_TRY(view->charge_host_memory(info.arena_bytes));  // as the host daemon does
      microlake::Admission admission;
      admission.backend = std::move(view);
      return admission;
    };
    server_ = std::move(microlake::Server::start(*device_, options)).value();
  }
  void TearDown() override { server_.reset(); }

  Result<std::unique_ptr<guest::Connection>> connect(const std::string& vm,
                                                     const std::string& token) {
    return guest::Connection::connect_unix(path_, {.vm_name = vm, .credential = token});
  }
  // Forks a hog guest (spawn_hog) and returns once its work is queued on
  // the host; -1 if it did not get that far.
  pid_t start_hog();
  std::uint64_t used(const std::string& vm) {
    return vgpu_.vms().find(vm).value()->device_memory().used();
  }

  std::string path_;
  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 512ull << 20, .workers = 2});
  FifoPolicies fifo_;
  LruMemoryPolicies lru_;
  VgpuService vgpu_{*device_, fifo_};
  std::unique_ptr<microlake::Server> server_;
};

TEST_F(Isolation, ForgedCredentialGetsAClearErrorAndNothingElse) {
  auto conn = connect("vm-a", "token-b");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(conn.error().message().find("host refused"), std::string::npos);
  EXPECT_EQ(server_->session_count(), 0u);
}

TEST_F(Isolation, GuestSeesItsQuotaAsAnAllocationError) {
  auto conn = connect("vm-a", "token-a");
  ASSERT_TRUE(conn.ok()) << conn.error().to_string();
  auto a = (*conn)->allocate(8 << 20);
  ASSERT_TRUE(a.ok());
  auto b = (*conn)->allocate(1);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(used("vm-a"), 8u << 20);
}

TEST_F(Isolation, KilledGuestMidTransferIsReleasedWithinOneSecondAndOthersFinish) {
  auto other = connect("vm-b", "token-b");
  ASSERT_TRUE(other.ok());
  auto mine = (*other)->allocate(1 << 20);
  auto stream = (*other)->create_stream();
  ASSERT_TRUE(mine.ok() && stream.ok());

  const std::string path = path_;
  pid_t pid = ::fork();
  if (pid == 0) {
    auto conn = guest::Connection::connect_unix(path, {.vm_name = "vm-a", .credential = "token-a"});
    if (!conn.ok()) ::_exit(2);
    auto buf = (*conn)->allocate(4 << 20);
    auto s = (*conn)->create_stream();
    std::vector<std::byte> data(4 << 20, std::byte{1});
    for (;;) (void)s->write(*buf, 0, data);
  }
  auto until = std::chrono::steady_clock::now() + 3s;
  while (used("vm-a") == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  ASSERT_GT(used("vm-a"), 0u);
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  const auto killed_at = std::chrono::steady_clock::now();
  while (used("vm-a") != 0 && std::chrono::steady_clock::now() - killed_at < 1s) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(used("vm-a"), 0u) << "all of the killed VM's memory back within one second";

  std::vector<std::byte> data(1 << 20, std::byte{7}), back(1 << 20);
  ASSERT_TRUE(stream->write(*mine, 0, data).ok());
  ASSERT_TRUE(stream->read(*mine, 0, back).ok());
  EXPECT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(data, back);
}

// A guest of an oversubscribed VM killed while its buffers are spilled and
// spill, fill and prefetch copies run: within one second every byte is
// accounted back (device quota, virtual limit, resident and spilled bytes).
TEST_F(Isolation, KilledGuestWithBuffersSpilledAndCopiesInFlightIsReleasedWithinOneSecond) {
  const std::string path = path_;
  pid_t pid = ::fork();
  if (pid == 0) {
    auto conn =
        guest::Connection::connect_unix(path, {.vm_name = "vm-spill", .credential = "token-spill"});
    if (!conn.ok()) ::_exit(2);
    std::vector<guest::Buffer> buffers;
    for (int i = 0; i < 8; ++i) {
      auto b = (*conn)->allocate(1 << 20);
      if (!b.ok()) ::_exit(3);
      buffers.push_back(std::move(b).value());
    }
    auto s = (*conn)->create_stream();
    if (!s.ok()) ::_exit(4);
    for (std::uint8_t round = 0;; ++round) {
      for (guest::Buffer& b : buffers) (void)s->memset(b, 0, 1 << 20, round);
    }
  }
  Vm& vm = *vgpu_.vms().find("vm-spill").value();
  auto until = std::chrono::steady_clock::now() + 5s;
  while (vm.memory().stats().bytes_out < (16u << 20) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GE(vm.memory().stats().bytes_out, 16u << 20) << "the guest should be spilling";
  ASSERT_GT(vm.memory().stats().spilled_bytes, 0u);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  const auto killed_at = std::chrono::steady_clock::now();
  auto released = [&] {
    const MemoryStats m = vm.memory().stats();
    return vm.device_memory().used() == 0 && vm.virtual_memory().used() == 0 &&
           m.resident_bytes == 0 && m.spilled_bytes == 0;
  };
  while (!released() && std::chrono::steady_clock::now() - killed_at < 1s) {
    std::this_thread::sleep_for(2ms);
  }
  const MemoryStats m = vm.memory().stats();
  EXPECT_EQ(vm.device_memory().used(), 0u);
  EXPECT_EQ(vm.virtual_memory().used(), 0u);
  EXPECT_EQ(m.resident_bytes, 0u);
  EXPECT_EQ(m.spilled_bytes, 0u);
  EXPECT_EQ(m.failed_placements, 0u);
  // The device holds nothing of it: every allocation went back.
  EXPECT_EQ(device_->memory_in_use(), 0u);
}

// A guest process of vm-a that queues seconds of device work (memsets on
// four streams), tells the test through `ready`, and then blocks: the
// test decides whether it lives or is killed with its queue full.
pid_t spawn_hog(const std::string& path, int ready_fd) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  auto conn = guest::Connection::connect_unix(path, {.vm_name = "vm-a", .credential = "token-a"});
  if (!conn.ok()) ::_exit(2);
  // A buffer per stream: the streams run at once, and writes of one buffer
  // from several would race (harmless here, but ThreadSanitizer says so).
  std::vector<guest::Buffer> buffers;
  std::vector<guest::Stream> streams;
  for (int i = 0; i < 4; ++i) {
    auto b = (*conn)->allocate(2 << 20);
    auto s = (*conn)->create_stream();
    if (!b.ok() || !s.ok()) ::_exit(3);
    buffers.push_back(std::move(b).value());
    streams.push_back(std::move(s).value());
  }
  // 4 x 1500 memsets of 2 MiB: seconds of a 2-core device.
  for (int round = 0; round < 1500; ++round) {
    for (int i = 0; i < 4; ++i) {
      if (!streams[i].memset(buffers[i], 0, 2 << 20, static_cast<std::uint8_t>(round)).ok()) {
        ::_exit(5);
      }
    }
  }
  (void)(*conn)->ping();  // the host has read everything up to here
  const char byte = 1;
  (void)!::write(ready_fd, &byte, 1);
  ::pause();
  ::_exit(0);
}

pid_t Isolation::start_hog() {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = spawn_hog(path_, fds[1]);
  char byte = 0;
  const bool ready = ::read(fds[0], &byte, 1) == 1;
  ::close(fds[0]);
  ::close(fds[1]);
  if (ready) return pid;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

TEST_F(Isolation, DepartedGuestsQueuedWorkIsCancelledAndItsQuotaBackWithinOneSecond) {
  const pid_t pid = start_hog();
  ASSERT_GT(pid, 0) << "the hog guest did not queue its work";
  ASSERT_GT(used("vm-a"), 0u);
  ASSERT_GT(vgpu_.vms().find("vm-a").value()->counters().queue_depth.load(), 1000u)
      << "the hog's work should still be queued when it dies";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  const auto killed_at = std::chrono::steady_clock::now();
  while ((used("vm-a") != 0 || server_->session_count() != 0) &&
         std::chrono::steady_clock::now() - killed_at < 1s) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(used("vm-a"), 0u) << "the departed VM's memory back within one second";
  EXPECT_EQ(server_->session_count(), 0u) << "its session gone within one second";
  EXPECT_EQ(vgpu_.vms().find("vm-a").value()->counters().queue_depth.load(), 0u);
  EXPECT_GT(vgpu_.scheduler().stats().cancelled_ops, 1000u) << "queued work was cancelled, not run";
}

TEST_F(Isolation, AnotherVmsQueueDelaysMyNextOpOnlyByTheStarvationBoundAndOneBatch) {
  // Under the host level fifo the hog's thousands of older ops would all
  // run before vm-b's; the scheduler's starvation bound serves vm-b after at
  // most 5 ms plus the batch on the device. (Under the default, priority,
  // fair sharing alone would serve vm-b first: it has used nothing.)
  vgpu_.scheduler().set_host_policy(HostSchedPolicy::kFifo);
  const pid_t pid = start_hog();
  ASSERT_GT(pid, 0) << "the hog guest did not queue its work";
  auto other = connect("vm-b", "token-b");
  ASSERT_TRUE(other.ok()) << other.error().to_string();
  auto buf = (*other)->allocate(4096);
  auto stream = (*other)->create_stream();
  ASSERT_TRUE(buf.ok() && stream.ok());
  std::vector<std::byte> data(4096, std::byte{9}), back(4096);
  ASSERT_TRUE(stream->write(*buf, 0, data).ok());
  ASSERT_TRUE(stream->read(*buf, 0, back).ok());
  ASSERT_TRUE(stream->synchronize().ok());
  EXPECT_EQ(data, back);
  // What the hog still has queued shows vm-b did not wait for its queue.
  EXPECT_GT(vgpu_.vms().find("vm-a").value()->counters().queue_depth.load(), 100u)
      << "vm-b's op waited behind the hog's whole queue";
  EXPECT_GT(vgpu_.scheduler().stats().starvation_overrides, 0u);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
}

TEST_F(Isolation, SessionsBeyondTheVmsHostMemoryOrSessionLimitAreRefusedNamingTheLimit) {
  // Each session's arena (4 MiB here) is host memory the VM holds.
  ASSERT_TRUE(
      vgpu_.vms()
          .create(
              {.name = "vm-c", .token = "token-c", .host_memory_limit = 8 << 20, .max_sessions = 3})
          .ok());
  auto first = connect("vm-c", "token-c");
  auto second = connect("vm-c", "token-c");
  ASSERT_TRUE(first.ok() && second.ok());
  auto vm = vgpu_.vms().find("vm-c").value();
  EXPECT_EQ(vm->host_memory()->used(), 8u << 20);
  auto third = connect("vm-c", "token-c");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(third.error().message().find("VM 'vm-c' host memory: 8388608 bytes in use + 4194304 "
                                         "requested > limit 8388608"),
            std::string::npos)
      << third.error().to_string();
  // Without the host-memory limit the session limit is the one that bites.
  VmConfig config = vm->config();
  config.host_memory_limit = 0;
  ASSERT_TRUE(vgpu_.vms().update("vm-c", config).ok());
  auto third_again = connect("vm-c", "token-c");
  ASSERT_TRUE(third_again.ok()) << third_again.error().to_string();
  auto fourth = connect("vm-c", "token-c");
  ASSERT_FALSE(fourth.ok());
  EXPECT_EQ(fourth.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(fourth.error().message().find("VM 'vm-c' session limit: 3 sessions open, limit 3"),
            std::string::npos)
      << fourth.error().to_string();
  first->reset();
  second->reset();
  third_again->reset();
  auto until = std::chrono::steady_clock::now() + 5s;
  while (server_->session_count() != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(vm->host_memory()->used(), 0u) << "arenas are given back with their sessions";
  EXPECT_EQ(vm->counters().sessions.load(), 0u);
}

TEST_F(Isolation, SixtyFourGuestsComingWorkingAndLeavingLeaveNothing) {
  std::vector<std::thread> guests;
  std::atomic<int> worked{0};
  for (int i = 0; i < 64; ++i) {
    guests.emplace_back([&, i] {
      const char* vm = i % 2 ? "vm-a" : "vm-b";
      auto conn = connect(vm, i % 2 ? "token-a" : "token-b");
      if (!conn.ok()) return;
      auto buf = (*conn)->allocate(64 << 10);
      auto s = (*conn)->create_stream();
      if (!buf.ok() || !s.ok()) return;
      std::vector<std::byte> data(64 << 10, std::byte(i)), back(64 << 10);
      if (s->write(*buf, 0, data).ok() && s->read(*buf, 0, back).ok() && s->synchronize().ok() &&
          data == back) {
        ++worked;
      }
    });
  }
  for (auto& g : guests) g.join();
  EXPECT_EQ(worked.load(), 64);
  auto until = std::chrono::steady_clock::now() + 10s;
  while (server_->session_count() != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(server_->session_count(), 0u);
  EXPECT_EQ(used("vm-a"), 0u);
  EXPECT_EQ(used("vm-b"), 0u);
  EXPECT_EQ(device_->memory_in_use(), 0u);
}

}  // namespace
}  // namespace malv::vgpu
