// The vGPU service behind a real Micro-LAKE server: authentication, quotas
// as guests see them, and clean-up when guests die.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "guest/connection.h"
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
    microlake::ServerOptions options;
    options.unix_path = path_;
    options.default_arena_bytes = 4 << 20;
    options.admit = [this](const microlake::HelloInfo& info) -> Result<microlake::Admission> {
      MALV_ASSIGN_OR_RETURN(auto view, vgpu_.open_session(info.vm_name, info.credential));
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
  std::uint64_t used(const std::string& vm) {
    return vgpu_.vms().find(vm).value()->counters().memory_used.load();
  }

  std::string path_;
  std::unique_ptr<accel::Backend> device_ =
      accel::make_cpu_backend({.memory_bytes = 512ull << 20, .workers = 2});
  FifoPolicies fifo_;
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
