// CPU lists in the kernel's format, a process's affinity, the weight
// conversions of each mechanism, and the rules for VM names (which become
// directory names).
#include "cpu_control/cpu_list.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "cpu_control/cpu_groups.h"
#include "cpu_control/cpu_weight.h"

namespace malv::cpu_control {
namespace {

TEST(CpuListTest, ParsesRangesAndSinglesIntoASortedList) {
  auto cpus = parse_cpu_list("4,0-2,2\n");
  ASSERT_TRUE(cpus.ok()) << cpus.error().to_string();
  EXPECT_EQ(*cpus, (std::vector<int>{0, 1, 2, 4}));
  auto none = parse_cpu_list("\n");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(CpuListTest, MalformedListsAreRefusedNamingTheText) {
  for (const char* text : {"a", "1-", "3-1", "1,", "-1", "1,,2", "99999"}) {
    auto cpus = parse_cpu_list(text);
    ASSERT_FALSE(cpus.ok()) << text;
    EXPECT_EQ(cpus.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(cpus.error().message().find(text), std::string::npos) << cpus.error().message();
  }
}

TEST(CpuListTest, FormatJoinsRuns) {
  EXPECT_EQ(format_cpu_list({5, 0, 1, 2, 7, 8}), "0-2,5,7-8");
  EXPECT_EQ(format_cpu_list({3}), "3");
  EXPECT_EQ(format_cpu_list({}), "");
}

TEST(CpuWeightTest, SharesScaleFrom1024AtTheDefault) {
  EXPECT_EQ(weight_to_shares(100), 1024u);
  EXPECT_EQ(weight_to_shares(200), 2048u);
  EXPECT_EQ(weight_to_shares(1), 10u);
  EXPECT_EQ(weight_to_shares(10000), 102400u);
}

TEST(CpuWeightTest, NiceFollowsCfsStepsOfAQuarter) {
  EXPECT_EQ(weight_to_nice(100), 0);
  EXPECT_EQ(weight_to_nice(200), -3);
  EXPECT_EQ(weight_to_nice(50), 3);
  EXPECT_EQ(weight_to_nice(25), 6);
  EXPECT_EQ(weight_to_nice(1), 19);
  EXPECT_EQ(weight_to_nice(10000), -20);
}

TEST(VmNameTest, NamesThatAreNotPlainDirectoryNamesAreRefusedSayingWhy) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "empty"},
      {"a/b", "'/'"},
      {"..", "directory of its own"},
      {".", "directory of its own"},
      {".hidden", "starts with '.'"},
      {std::string(65, 'v'), "65 bytes"},
      {"vm a", "0x20"},
  };
  for (const auto& [name, why] : cases) {
    Status status = CpuGroups::validate_vm_name(name);
    ASSERT_FALSE(status.ok()) << name;
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(status.error().message().find(why), std::string::npos) << status.error().message();
  }
  EXPECT_TRUE(CpuGroups::validate_vm_name("vm-a_1.b").ok());
  EXPECT_TRUE(CpuGroups::validate_vm_name(std::string(64, 'v')).ok());
}

// What `malv serve --host-cpus` does: every thread of the process, those
// running now and those started later, on the cores named.
TEST(ProcessAffinityTest, EveryThreadNowAndLaterRunsOnTheCoresNamed) {
  Result<std::vector<int>> all = thread_affinity(0);
  ASSERT_TRUE(all.ok());
  const std::vector<int> one = {all->back()};
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::atomic<pid_t> running{0};
  std::thread before([&] {
    running = static_cast<pid_t>(::gettid());
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return stop; });
  });
  while (running.load() == 0) std::this_thread::yield();
  ASSERT_TRUE(set_process_affinity(one).ok());
  EXPECT_EQ(*thread_affinity(0), one);
  EXPECT_EQ(*thread_affinity(running.load()), one);
  std::vector<int> later;
  std::thread([&] { later = *thread_affinity(0); }).join();
  EXPECT_EQ(later, one);
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  before.join();
  // Back to every core, and a CPU the process may not use is refused.
  ASSERT_TRUE(set_process_affinity(*all).ok());
  EXPECT_EQ(*thread_affinity(0), *all);
  EXPECT_FALSE(set_process_affinity({CPU_SETSIZE + 1}).ok());
}

}  // namespace
}  // namespace malv::cpu_control
