// CpuGroups on this machine's real cgroups, and under the forced thread
// fallback. Tests that write cgroups skip, saying why, when the process is
// not root or no cpu controller is writable. Children are real processes
// (fork), threads real threads; every test checks that what it made is
// gone afterwards.
#include "cpu_control/cpu_groups.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "cpu_control/cpu_list.h"

namespace malv::cpu_control {
namespace {

using namespace std::chrono_literals;

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string out = text.str();
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// The cgroup path of thread `tid` in the v1 hierarchy of `controller`, or
// in cgroup v2 for an empty controller.
std::string cgroup_path(pid_t tid, const std::string& controller) {
  std::istringstream lines(
      read_file("/proc/" + std::to_string(tid) + "/task/" + std::to_string(tid) + "/cgroup"));
  std::string line;
  while (std::getline(lines, line)) {
    const std::size_t first = line.find(':');
    const std::size_t second = line.find(':', first + 1);
    std::istringstream names(line.substr(first + 1, second - first - 1));
    bool match = controller.empty() && line.compare(0, 3, "0::") == 0;
    for (std::string name; !controller.empty() && std::getline(names, name, ',');) {
      match = match || name == controller;
    }
    if (match) return line.substr(second + 1);
  }
  return "";
}

bool ends_with(const std::string& text, const std::string& tail) {
  return text.size() >= tail.size() &&
         text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

std::vector<int> affinity_of(pid_t tid) {
  auto cpus = thread_affinity(tid);
  return cpus.ok() ? cpus.value() : std::vector<int>{};
}

int nice_of(pid_t tid) {
  errno = 0;
  return ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
}

// The threads of process `pid`, sorted.
std::vector<pid_t> threads_of(pid_t pid) {
  std::vector<pid_t> tids;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    tids.push_back(std::stoi(entry.path().filename().string()));
  }
  std::sort(tids.begin(), tids.end());
  return tids;
}

// A child process that spins or sleeps until killed.
class Child {
 public:
  explicit Child(bool busy) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (busy) {
        volatile std::uint64_t spin = 0;
        for (;;) spin = spin + 1;
      }
      for (;;) ::pause();
    }
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// A thread of this process that waits until stopped; tid() is its id.
class WaitingThread {
 public:
  WaitingThread() {
    std::promise<pid_t> started;
    auto tid = started.get_future();
    thread_ = std::thread([this, &started] {
      started.set_value(::gettid());
      while (!stop_.load()) std::this_thread::sleep_for(1ms);
    });
    tid_ = tid.get();
  }
  ~WaitingThread() { stop(); }
  WaitingThread(const WaitingThread&) = delete;
  WaitingThread& operator=(const WaitingThread&) = delete;
  pid_t tid() const { return tid_; }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  pid_t tid_ = 0;
};

// A process id that no process has: a child that was waited for.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

std::string group_name() { return "malv-" + std::to_string(::getpid()); }

// Where the host's group is for `controller` (v1) or in cgroup v2 ("").
std::string expected_group_dir(Mechanism mechanism, const std::string& controller) {
  std::string mount = "/sys/fs/cgroup/" + controller;
  if (mechanism == Mechanism::kCgroupV2) {
    mount = is_directory("/sys/fs/cgroup/unified") &&
                    std::ifstream("/sys/fs/cgroup/unified/cgroup.controllers").good()
                ? "/sys/fs/cgroup/unified"
                : "/sys/fs/cgroup";
  }
  const std::string path =
      cgroup_path(::gettid(), mechanism == Mechanism::kCgroupV2 ? "" : controller);
  std::string host = path == "/" ? mount : mount + path;
  if (!is_directory(host)) host = mount;
  return host + "/" + group_name();
}

// ---------------------------------------------------------------- cgroups

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "writing cgroups needs root";
    auto opened = CpuGroups::open({});
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    groups_ = std::move(opened).value();
    if (groups_->mechanism() == Mechanism::kThreadFallback) {
      GTEST_SKIP() << "no writable cpu controller here: " << groups_->describe();
    }
    mechanism_ = groups_->mechanism();
  }

  std::string cpu_dir() const {
    return expected_group_dir(mechanism_, mechanism_ == Mechanism::kCgroupV2 ? "" : "cpu");
  }
  std::string cpuset_dir() const {
    return expected_group_dir(mechanism_, mechanism_ == Mechanism::kCgroupV2 ? "" : "cpuset");
  }
  // The thread's cgroup path in the cpu hierarchy.
  std::string cpu_path_of(pid_t tid) const {
    return cgroup_path(tid, mechanism_ == Mechanism::kCgroupV2 ? "" : "cpu");
  }

  std::unique_ptr<CpuGroups> groups_;
  Mechanism mechanism_ = Mechanism::kThreadFallback;
};

TEST(CpuGroupsOpenTest, PicksTheCgroupMechanismThisMachineOffersAndSaysWhyNotTheOthers) {
  if (::geteuid() != 0) GTEST_SKIP() << "writing cgroups needs root";
  auto groups = CpuGroups::open({});
  ASSERT_TRUE(groups.ok()) << groups.error().to_string();
  const std::string described = (*groups)->describe();
  const bool v2_cpu =
      read_file("/sys/fs/cgroup/cgroup.controllers").find("cpu") != std::string::npos ||
      read_file("/sys/fs/cgroup/unified/cgroup.controllers").find("cpu") != std::string::npos;
  const bool v1_cpu = std::ifstream("/sys/fs/cgroup/cpu/cpu.shares").good();
  if (v2_cpu) {
    EXPECT_EQ((*groups)->mechanism(), Mechanism::kCgroupV2) << described;
  } else if (v1_cpu) {
    // A hybrid host: cpu is bound to v1, and cgroup v2 is said to lack it.
    EXPECT_EQ((*groups)->mechanism(), Mechanism::kCgroupV1) << described;
    EXPECT_NE(described.find("cgroup-v2"), std::string::npos) << described;
  } else {
    GTEST_SKIP() << "no cpu controller mounted at /sys/fs/cgroup: " << described;
  }
  EXPECT_EQ(described.find(mechanism_name((*groups)->mechanism())), 0u) << described;
  EXPECT_NE(described.find(group_name()), std::string::npos) << described;
  EXPECT_FALSE((*groups)->cpus().empty());
}

TEST_F(CgroupTest, AddVmMakesTheGroupInEveryHierarchyOnce) {
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  EXPECT_TRUE(is_directory(cpu_dir() + "/vm-a")) << cpu_dir();
  EXPECT_TRUE(is_directory(cpuset_dir() + "/vm-a")) << cpuset_dir();
  if (mechanism_ == Mechanism::kCgroupV1) {
    EXPECT_EQ(read_file(cpuset_dir() + "/vm-a/cpuset.cpus"), format_cpu_list(groups_->cpus()));
    EXPECT_FALSE(read_file(cpuset_dir() + "/vm-a/cpuset.mems").empty());
  } else {
    EXPECT_EQ(read_file(cpu_dir() + "/vm-a/cgroup.type"), "threaded");
  }
  Status again = groups_->add_vm("vm-a");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(groups_->vms(), std::vector<std::string>{"vm-a"});
}

TEST_F(CgroupTest, AttachedProcessAndThreadAreInTheGroupAndWeightBecomesShares) {
  Child child(/*busy=*/false);
  WaitingThread thread;
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->attach_process("vm-a", child.pid()).ok());
  ASSERT_TRUE(groups_->attach_thread("vm-a", thread.tid()).ok());
  // The child's threads (a sanitizer may give it one of its own) and ours.
  std::vector<pid_t> expected = threads_of(child.pid());
  expected.push_back(thread.tid());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(groups_->threads("vm-a"), expected);
  const std::string tail = "/" + group_name() + "/vm-a";
  EXPECT_TRUE(ends_with(cpu_path_of(child.pid()), tail)) << cpu_path_of(child.pid());
  EXPECT_TRUE(ends_with(cpu_path_of(thread.tid()), tail)) << cpu_path_of(thread.tid());
  // This thread (the test's main one) stayed where the host lives.
  EXPECT_FALSE(ends_with(cpu_path_of(::gettid()), tail));

  ASSERT_TRUE(groups_->set_weight("vm-a", 200).ok());
  if (mechanism_ == Mechanism::kCgroupV1) {
    EXPECT_EQ(read_file(cpu_dir() + "/vm-a/cpu.shares"), "2048");
    ASSERT_TRUE(groups_->set_weight("vm-a", 1).ok());
    EXPECT_EQ(read_file(cpu_dir() + "/vm-a/cpu.shares"), "10");
  } else {
    EXPECT_EQ(read_file(cpu_dir() + "/vm-a/cpu.weight"), "200");
  }
  Status zero = groups_->set_weight("vm-a", 0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(groups_->set_weight("vm-b", 100).error().code(), ErrorCode::kNotFound);
}

TEST_F(CgroupTest, SetCpusWritesTheCpusetAndTheChildsAffinityFollows) {
  const std::vector<int> host = groups_->cpus();
  if (host.size() < 2) GTEST_SKIP() << "needs two CPUs to narrow a group";
  Child child(/*busy=*/false);
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->attach_process("vm-a", child.pid()).ok());
  ASSERT_TRUE(groups_->set_cpus("vm-a", {host.back()}).ok());
  EXPECT_EQ(read_file(cpuset_dir() + "/vm-a/cpuset.cpus"), std::to_string(host.back()));
  EXPECT_EQ(affinity_of(child.pid()), std::vector<int>{host.back()});
  ASSERT_TRUE(groups_->set_cpus("vm-a", {}).ok());
  EXPECT_EQ(read_file(cpuset_dir() + "/vm-a/cpuset.cpus"), format_cpu_list(host));
  EXPECT_EQ(affinity_of(child.pid()), host);
  Status outside = groups_->set_cpus("vm-a", {4000});
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(outside.error().message().find("4000"), std::string::npos);
}

TEST_F(CgroupTest, UsageGrowsWhileTheChildBurnsCpu) {
  Child child(/*busy=*/true);
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->attach_process("vm-a", child.pid()).ok());
  auto before = groups_->usage("vm-a");
  ASSERT_TRUE(before.ok()) << before.error().to_string();
  std::this_thread::sleep_for(300ms);
  auto after = groups_->usage("vm-a");
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(after->threads, threads_of(child.pid()).size());
  // The child spins on one CPU: even on a busy machine it gets some of 300 ms.
  EXPECT_GT(after->cpu_time_ns, before->cpu_time_ns + 10'000'000)
      << before->cpu_time_ns << " -> " << after->cpu_time_ns;
  EXPECT_GE(after->runqueue_delay_ns, before->runqueue_delay_ns);
}

TEST_F(CgroupTest, RemoveVmMovesEveryThreadBackAndLeavesNothing) {
  Child child(/*busy=*/false);
  WaitingThread thread;
  const std::string child_before = cpu_path_of(child.pid());
  const std::string thread_before = cpu_path_of(thread.tid());
  const std::vector<int> affinity_before = affinity_of(child.pid());
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->attach_process("vm-a", child.pid()).ok());
  ASSERT_TRUE(groups_->attach_thread("vm-a", thread.tid()).ok());
  ASSERT_TRUE(groups_->set_cpus("vm-a", {groups_->cpus().front()}).ok());

  ASSERT_TRUE(groups_->remove_vm("vm-a").ok());
  EXPECT_EQ(cpu_path_of(child.pid()), child_before);
  EXPECT_EQ(cpu_path_of(thread.tid()), thread_before);
  if (mechanism_ == Mechanism::kCgroupV1) {
    EXPECT_EQ(cgroup_path(child.pid(), "cpuset"), cgroup_path(::gettid(), "cpuset"));
  }
  EXPECT_EQ(affinity_of(child.pid()), affinity_before);
  EXPECT_FALSE(is_directory(cpu_dir() + "/vm-a"));
  EXPECT_FALSE(is_directory(cpuset_dir() + "/vm-a"));
  EXPECT_TRUE(groups_->threads("vm-a").empty());
  EXPECT_EQ(groups_->usage("vm-a").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(groups_->remove_vm("vm-a").error().code(), ErrorCode::kNotFound);
  // The name can be used again.
  EXPECT_TRUE(groups_->add_vm("vm-a").ok());
}

TEST_F(CgroupTest, DetachThreadPutsOneThreadBack) {
  WaitingThread first;
  WaitingThread second;
  const std::string before = cpu_path_of(first.tid());
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->attach_thread("vm-a", first.tid()).ok());
  ASSERT_TRUE(groups_->attach_thread("vm-a", second.tid()).ok());
  ASSERT_TRUE(groups_->detach_thread(first.tid()).ok());
  EXPECT_EQ(cpu_path_of(first.tid()), before);
  EXPECT_EQ(groups_->threads("vm-a"), std::vector<pid_t>{second.tid()});
  EXPECT_EQ(groups_->detach_thread(first.tid()).error().code(), ErrorCode::kNotFound);
}

TEST_F(CgroupTest, AThreadMovesFromOneVmToAnotherAndBackToWhereItCameFrom) {
  WaitingThread thread;
  const std::string before = cpu_path_of(thread.tid());
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->add_vm("vm-b").ok());
  ASSERT_TRUE(groups_->attach_thread("vm-a", thread.tid()).ok());
  ASSERT_TRUE(groups_->attach_thread("vm-b", thread.tid()).ok());
  EXPECT_TRUE(groups_->threads("vm-a").empty());
  EXPECT_EQ(groups_->threads("vm-b"), std::vector<pid_t>{thread.tid()});
  ASSERT_TRUE(groups_->remove_vm("vm-b").ok());
  EXPECT_EQ(cpu_path_of(thread.tid()), before);
}

TEST_F(CgroupTest, DestructorRemovesEveryGroupItMade) {
  Child child(/*busy=*/false);
  const std::string child_before = cpu_path_of(child.pid());
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->add_vm("vm-b").ok());
  ASSERT_TRUE(groups_->attach_process("vm-b", child.pid()).ok());
  ASSERT_TRUE(is_directory(cpu_dir()));
  groups_.reset();
  EXPECT_FALSE(is_directory(cpu_dir())) << cpu_dir();
  EXPECT_FALSE(is_directory(cpuset_dir())) << cpuset_dir();
  if (mechanism_ == Mechanism::kCgroupV1) {
    EXPECT_FALSE(is_directory(expected_group_dir(mechanism_, "cpuacct")));
  }
  EXPECT_EQ(cpu_path_of(child.pid()), child_before);
}

TEST_F(CgroupTest, ThreadOrProcessThatExitedBeforeAttachIsNotFoundAndLeavesNothing) {
  pid_t gone_tid = 0;
  std::thread([&gone_tid] { gone_tid = ::gettid(); }).join();
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  Status thread = groups_->attach_thread("vm-a", gone_tid);
  ASSERT_FALSE(thread.ok());
  EXPECT_EQ(thread.error().code(), ErrorCode::kNotFound);
  Status process = groups_->attach_process("vm-a", dead_pid());
  ASSERT_FALSE(process.ok());
  EXPECT_EQ(process.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(groups_->threads("vm-a").empty());
  EXPECT_TRUE(groups_->remove_vm("vm-a").ok());
}

TEST_F(CgroupTest, AProcessThatExitsInsideTheGroupDoesNotBlockRemoval) {
  Child child(/*busy=*/false);
  ASSERT_TRUE(groups_->add_vm("vm-a").ok());
  ASSERT_TRUE(groups_->attach_process("vm-a", child.pid()).ok());
  child.stop();
  EXPECT_TRUE(groups_->threads("vm-a").empty());
  EXPECT_TRUE(groups_->remove_vm("vm-a").ok());
  EXPECT_FALSE(is_directory(cpu_dir() + "/vm-a"));
}

TEST(CpuGroupsStaleTest, AnEmptyGroupLeftByAHostThatDiedIsRemovedOnOpen) {
  if (::geteuid() != 0) GTEST_SKIP() << "writing cgroups needs root";
  {
    auto opened = CpuGroups::open({});
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    if ((*opened)->mechanism() != Mechanism::kCgroupV1) {
      GTEST_SKIP() << "checks cgroup v1 only; here: " << (*opened)->describe();
    }
  }
  const std::string host = expected_group_dir(Mechanism::kCgroupV1, "cpu");
  const std::string parent = host.substr(0, host.rfind('/'));
  const std::string stale = parent + "/malv-" + std::to_string(dead_pid());
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0) << stale;
  ASSERT_EQ(::mkdir((stale + "/vm-x").c_str(), 0755), 0);
  auto opened = CpuGroups::open({});
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  EXPECT_FALSE(is_directory(stale));
  ::rmdir((stale + "/vm-x").c_str());
  ::rmdir(stale.c_str());
}

TEST(CpuGroupsStaleTest, AGroupNamedForOurPidThatAnEarlierProcessLeftIsReplacedOnOpen) {
  if (::geteuid() != 0) GTEST_SKIP() << "writing cgroups needs root";
  {
    auto opened = CpuGroups::open({});
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    if ((*opened)->mechanism() != Mechanism::kCgroupV1) {
      GTEST_SKIP() << "checks cgroup v1 only; here: " << (*opened)->describe();
    }
  }
  // Pids are reused: a host that died without cleaning up may have had ours.
  const std::string mine = expected_group_dir(Mechanism::kCgroupV1, "cpu");
  ASSERT_EQ(::mkdir(mine.c_str(), 0755), 0) << mine;
  ASSERT_EQ(::mkdir((mine + "/vm-x").c_str(), 0755), 0);
  {
    auto opened = CpuGroups::open({});
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    EXPECT_EQ((*opened)->mechanism(), Mechanism::kCgroupV1) << (*opened)->describe();
    EXPECT_FALSE(is_directory(mine + "/vm-x"));
    EXPECT_TRUE(is_directory(mine));
    // While it is open, a second one in this process does not take it over.
    auto second = CpuGroups::open({});
    ASSERT_TRUE(second.ok()) << second.error().to_string();
    EXPECT_NE((*second)->mechanism(), Mechanism::kCgroupV1) << (*second)->describe();
    EXPECT_TRUE(is_directory(mine));
  }
  EXPECT_FALSE(is_directory(mine));
  ::rmdir((mine + "/vm-x").c_str());
  ::rmdir(mine.c_str());
}

TEST(CpuGroupsOpenTest, AHostThatIsNotRootFallsBackAndSaysTheCgroupsAreNotWritable) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to become another user";
  // The real hierarchy, seen by an unprivileged user: a child drops to
  // nobody and reports what open() chose through its exit status.
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    auto groups = CpuGroups::open({});
    if (!groups.ok()) ::_exit(11);
    if ((*groups)->mechanism() != Mechanism::kThreadFallback) ::_exit(12);
    const std::string described = (*groups)->describe();
    if (described.find("no writable cpu controller") == std::string::npos) ::_exit(13);
    if (std::ifstream("/sys/fs/cgroup/cpu/cpu.shares").good() &&
        described.find("Permission denied") == std::string::npos) {
      ::_exit(14);
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: no setuid, 11: open failed, 12: not the fallback, "
                                       "13/14: describe() does not say why";
}

// ---------------------------------------------------------------- fallback

std::unique_ptr<CpuGroups> open_fallback() {
  CpuGroupOptions options;
  options.force = Mechanism::kThreadFallback;
  auto opened = CpuGroups::open(options);
  EXPECT_TRUE(opened.ok()) << opened.error().to_string();
  return opened.ok() ? std::move(opened).value() : nullptr;
}

// Raising a thread's priority back (a lower nice value) needs CAP_SYS_NICE.
bool may_lower_nice() { return ::geteuid() == 0; }

TEST(ThreadFallbackTest, ForcedFallbackSaysSoAndTouchesNoCgroup) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  EXPECT_EQ(groups->mechanism(), Mechanism::kThreadFallback);
  EXPECT_EQ(groups->describe().find("thread-fallback: "), 0u) << groups->describe();
  EXPECT_NE(groups->describe().find("forced by the caller"), std::string::npos)
      << groups->describe();
  ASSERT_TRUE(groups->add_vm("vm-a").ok());
  EXPECT_FALSE(is_directory(expected_group_dir(Mechanism::kCgroupV1, "cpu")));
}

TEST(ThreadFallbackTest, WeightAndCpusBecomeNiceAndAffinityAndAreRestoredOnRemove) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  const std::vector<int> host = groups->cpus();
  WaitingThread thread;
  Child child(/*busy=*/false);
  ASSERT_EQ(::setpriority(PRIO_PROCESS, static_cast<id_t>(thread.tid()), 3), 0);
  const std::vector<int> thread_cpus = affinity_of(thread.tid());

  ASSERT_TRUE(groups->add_vm("vm-a").ok());
  ASSERT_TRUE(groups->attach_thread("vm-a", thread.tid()).ok());
  ASSERT_TRUE(groups->attach_process("vm-a", child.pid()).ok());
  EXPECT_EQ(nice_of(thread.tid()), 3);  // nothing set yet: unchanged
  ASSERT_TRUE(groups->set_weight("vm-a", 25).ok());
  EXPECT_EQ(nice_of(thread.tid()), 6);
  EXPECT_EQ(nice_of(child.pid()), 6);
  ASSERT_TRUE(groups->set_cpus("vm-a", {host.front()}).ok());
  EXPECT_EQ(affinity_of(thread.tid()), std::vector<int>{host.front()});
  EXPECT_EQ(affinity_of(child.pid()), std::vector<int>{host.front()});
  auto usage = groups->usage("vm-a");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->threads, 2u);

  ASSERT_TRUE(groups->remove_vm("vm-a").ok());
  EXPECT_EQ(affinity_of(thread.tid()), thread_cpus);
  EXPECT_EQ(affinity_of(child.pid()), host);
  if (may_lower_nice()) {
    EXPECT_EQ(nice_of(thread.tid()), 3);
    EXPECT_EQ(nice_of(child.pid()), 0);
  }
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(thread.tid()), 0);
}

TEST(ThreadFallbackTest, ThreadsThatJoinLaterGetTheVmsSettings) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  const std::vector<int> host = groups->cpus();
  ASSERT_TRUE(groups->add_vm("vm-a").ok());
  ASSERT_TRUE(groups->set_weight("vm-a", 50).ok());
  ASSERT_TRUE(groups->set_cpus("vm-a", {host.back()}).ok());
  WaitingThread thread;
  ASSERT_TRUE(groups->attach_thread("vm-a", thread.tid()).ok());
  EXPECT_EQ(nice_of(thread.tid()), 3);
  EXPECT_EQ(affinity_of(thread.tid()), std::vector<int>{host.back()});
  ASSERT_TRUE(groups->detach_thread(thread.tid()).ok());
  EXPECT_EQ(affinity_of(thread.tid()), host);
  if (may_lower_nice()) {
    EXPECT_EQ(nice_of(thread.tid()), 0);
  }
  EXPECT_TRUE(groups->threads("vm-a").empty());
}

TEST(ThreadFallbackTest, DestructorRestoresEveryThread) {
  WaitingThread thread;
  const std::vector<int> before = affinity_of(thread.tid());
  {
    auto groups = open_fallback();
    ASSERT_NE(groups, nullptr);
    ASSERT_TRUE(groups->add_vm("vm-a").ok());
    ASSERT_TRUE(groups->attach_thread("vm-a", thread.tid()).ok());
    ASSERT_TRUE(groups->set_cpus("vm-a", {groups->cpus().front()}).ok());
    ASSERT_TRUE(groups->set_weight("vm-a", 50).ok());
  }
  EXPECT_EQ(affinity_of(thread.tid()), before);
  if (may_lower_nice()) {
    EXPECT_EQ(nice_of(thread.tid()), 0);
  }
}

TEST(ThreadFallbackTest, ThreadThatExitedIsNotFoundAndExitsInsideDropOut) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  ASSERT_TRUE(groups->add_vm("vm-a").ok());
  pid_t gone_tid = 0;
  std::thread([&gone_tid] { gone_tid = ::gettid(); }).join();
  EXPECT_EQ(groups->attach_thread("vm-a", gone_tid).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(groups->attach_process("vm-a", dead_pid()).error().code(), ErrorCode::kNotFound);
  auto thread = std::make_unique<WaitingThread>();
  ASSERT_TRUE(groups->attach_thread("vm-a", thread->tid()).ok());
  thread.reset();  // exits while in the group
  EXPECT_TRUE(groups->threads("vm-a").empty());
  EXPECT_TRUE(groups->set_weight("vm-a", 50).ok());
  EXPECT_TRUE(groups->remove_vm("vm-a").ok());
}

TEST(ThreadFallbackTest, TheHostsOwnProcessCannotJoinWhole) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  ASSERT_TRUE(groups->add_vm("vm-a").ok());
  Status whole = groups->attach_process("vm-a", ::getpid());
  ASSERT_FALSE(whole.ok());
  EXPECT_EQ(whole.error().code(), ErrorCode::kInvalidArgument);
  WaitingThread thread;
  Status not_a_process = groups->attach_process("vm-a", thread.tid());
  ASSERT_FALSE(not_a_process.ok());
  EXPECT_EQ(not_a_process.error().code(), ErrorCode::kInvalidArgument);
}

TEST(ThreadFallbackTest, BadVmNamesAreRefusedByEveryCall) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  for (const std::string& name : std::vector<std::string>{"", "a/b", "..", std::string(65, 'x')}) {
    EXPECT_EQ(groups->add_vm(name).error().code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_EQ(groups->set_weight(name, 100).error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(groups->remove_vm(name).error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_TRUE(groups->vms().empty());
}

TEST(ThreadFallbackTest, CallsFromManyThreadsAtOnceAreSafe) {
  auto groups = open_fallback();
  ASSERT_NE(groups, nullptr);
  ASSERT_TRUE(groups->add_vm("vm-a").ok());
  WaitingThread member;
  ASSERT_TRUE(groups->attach_thread("vm-a", member.tid()).ok());
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&groups, i] {
      for (int round = 0; round < 50; ++round) {
        EXPECT_TRUE(groups->set_weight("vm-a", 100 - (i + round) % 50).ok());
        EXPECT_TRUE(groups->usage("vm-a").ok());
        (void)groups->threads("vm-a");
      }
    });
  }
  for (auto& caller : callers) caller.join();
  EXPECT_TRUE(groups->remove_vm("vm-a").ok());
}

// ------------------------------------------------------- layout detection

class FakeRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/malv-cgroup-root-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  void write(const std::string& path, const std::string& text) {
    std::ofstream(root_ + "/" + path) << text;
  }
  std::string root_;
};

TEST_F(FakeRootTest, NoCgroupsAtAllFallsBackSayingWhyForEachVersion) {
  CpuGroupOptions options;
  options.cgroup_root = root_;
  auto groups = CpuGroups::open(options);
  ASSERT_TRUE(groups.ok()) << groups.error().to_string();
  EXPECT_EQ((*groups)->mechanism(), Mechanism::kThreadFallback);
  const std::string described = (*groups)->describe();
  EXPECT_NE(described.find("no cgroup v2 hierarchy at " + root_), std::string::npos) << described;
  EXPECT_NE(described.find("no cgroup v1 cpu hierarchy under " + root_), std::string::npos)
      << described;
}

TEST_F(FakeRootTest, ForcingAMechanismThatIsNotThereFails) {
  CpuGroupOptions options;
  options.cgroup_root = root_;
  options.force = Mechanism::kCgroupV1;
  auto groups = CpuGroups::open(options);
  ASSERT_FALSE(groups.ok());
  EXPECT_EQ(groups.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(groups.error().message().find("cgroup-v1"), std::string::npos);
}

TEST_F(FakeRootTest, AUnifiedHierarchyWithoutTheCpuControllerIsNotUsed) {
  ASSERT_EQ(::mkdir((root_ + "/unified").c_str(), 0755), 0);
  write("unified/cgroup.controllers", "hugetlb\n");
  write("unified/cgroup.subtree_control", "");
  CpuGroupOptions options;
  options.cgroup_root = root_;
  auto groups = CpuGroups::open(options);
  ASSERT_TRUE(groups.ok());
  EXPECT_NE((*groups)->describe().find("offers no cpu controller (it has 'hugetlb')"),
            std::string::npos)
      << (*groups)->describe();
}

TEST_F(FakeRootTest, CoMountedCpuAndCpuacctAreOneHierarchy) {
  // systemd's layout: cpu,cpuacct mounted together, cpu and cpuacct links.
  ASSERT_EQ(::mkdir((root_ + "/cpu,cpuacct").c_str(), 0755), 0);
  write("cpu,cpuacct/cpu.shares", "1024\n");
  write("cpu,cpuacct/cpuacct.usage", "0\n");
  write("cpu,cpuacct/tasks", "");
  ASSERT_EQ(::symlink("cpu,cpuacct", (root_ + "/cpu").c_str()), 0);
  ASSERT_EQ(::symlink("cpu,cpuacct", (root_ + "/cpuacct").c_str()), 0);
  CpuGroupOptions options;
  options.cgroup_root = root_;
  options.group_name = "malv-test";
  options.force = Mechanism::kCgroupV1;
  {
    auto groups = CpuGroups::open(options);
    ASSERT_TRUE(groups.ok()) << groups.error().to_string();
    const std::string described = (*groups)->describe();
    EXPECT_EQ(described.find("cgroup-v1: VM groups in " + root_ + "/cpu/malv-test (cpu,cpuacct)"),
              0u)
        << described;
    EXPECT_EQ(described.find("cpuacct)", described.find("cpuacct)") + 1), std::string::npos)
        << "one hierarchy, listed once: " << described;
    EXPECT_NE(described.find("no cpuset hierarchy"), std::string::npos) << described;
    EXPECT_TRUE(is_directory(root_ + "/cpu,cpuacct/malv-test"));
  }
  EXPECT_FALSE(is_directory(root_ + "/cpu,cpuacct/malv-test"));
}

}  // namespace
}  // namespace malv::cpu_control
