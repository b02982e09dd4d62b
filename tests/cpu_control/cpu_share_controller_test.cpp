// CpuShareController: a VM on builtin/none is left alone; a VM on a policy
// gets a group whose weight the policy decides, capped at the VM's limit;
// a VM whose members all left, or that was deleted, leaves nothing behind.
// On this machine's real cgroups when the test runs as root, else on the
// per-thread fallback.
#include "cpu_control/cpu_share_controller.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cpu_control/cpu_list.h"
#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_dir.h"

namespace malv::cpu_control {
namespace {

// A child process that sleeps until killed: a guest's process.
class Child {
 public:
  Child() {
    pid_ = ::fork();
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~Child() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

class CpuShareControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry.load_directory(mlaas::policy_dir()).ok());
    facts["vm1"] = VmCpuFacts{.vm_id = 1};
    HostView view;
    view.vm_names = [this] {
      std::vector<std::string> names;
      for (const auto& [name, f] : facts) names.push_back(name);
      return names;
    };
    view.facts = [this](std::string_view vm) -> std::optional<VmCpuFacts> {
      auto it = facts.find(std::string(vm));
      if (it == facts.end()) return std::nullopt;
      return it->second;
    };
    host = std::move(view);
    start({});
  }

  // (Re)starts the controller, with these threads as the accelerator's
  // batch workers.
  void start(std::vector<pid_t> batch_workers, std::vector<int> batch_worker_home = {}) {
    controller.reset();
    CpuControlOptions options;
    options.start_thread = false;
    options.groups.group_name = "malv-test-" + std::to_string(::getpid());
    if (::geteuid() != 0) options.groups.force = Mechanism::kThreadFallback;
    options.batch_worker_threads = std::move(batch_workers);
    options.batch_worker_home = std::move(batch_worker_home);
    auto started = CpuShareController::start(registry, runner, host, options);
    ASSERT_TRUE(started.ok()) << started.error().to_string();
    controller = std::move(started).value();
  }

  std::optional<VmCpuStatus> vm1() { return controller->status("vm1"); }

  mlaas::FeatureRegistry features;
  mlaas::HostServices services{features, nullptr};
  mlaas::PolicyRegistry registry{services.table()};
  mlaas::PolicyRunner runner{registry};
  std::map<std::string, VmCpuFacts> facts;
  HostView host;
  std::unique_ptr<CpuShareController> controller;
};

TEST_F(CpuShareControllerTest, AVmOnNoneIsLeftAlone) {
  Child guest;
  auto token = controller->join("vm1", guest.pid(), 0);
  controller->run_interval();
  ASSERT_TRUE(vm1());
  EXPECT_EQ(vm1()->policy, "builtin/none");
  EXPECT_FALSE(vm1()->managed);
  EXPECT_EQ(vm1()->members, 1u);
  EXPECT_EQ(vm1()->weight, 0u);
}

TEST_F(CpuShareControllerTest, APolicyDecidesTheWeightWithinTheVmsLimit) {
  Child guest;
  auto token = controller->join("vm1", guest.pid(), 0);
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
  controller->run_interval();
  ASSERT_TRUE(vm1());
  EXPECT_TRUE(vm1()->managed) << controller->mechanism();
  EXPECT_EQ(vm1()->weight, 100u);  // batch, compute weight 1
  EXPECT_GE(vm1()->threads, 1u);
  facts["vm1"].priority_class = MALV_PRIORITY_LATENCY;
  controller->run_interval();
  EXPECT_EQ(vm1()->weight, 800u);
  facts["vm1"].weight_limit = 300;  // the admin's cap wins
  controller->run_interval();
  EXPECT_EQ(vm1()->weight, 300u);
  EXPECT_EQ(vm1()->decisions, 3u);
  // Back to none: out of its group.
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "builtin/none").ok());
  controller->run_interval();
  EXPECT_FALSE(vm1()->managed);
  EXPECT_EQ(vm1()->threads, 0u);
}

TEST_F(CpuShareControllerTest, AVmWhoseMembersLeftOrThatWasDeletedIsForgotten) {
  Child guest;
  {
    auto token = controller->join("vm1", guest.pid(), 0);
    ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
    controller->run_interval();
    ASSERT_TRUE(vm1() && vm1()->managed);
  }
  controller->run_interval();
  EXPECT_FALSE(vm1());
  auto token = controller->join("vm1", guest.pid(), 0);
  controller->run_interval();
  ASSERT_TRUE(vm1() && vm1()->managed);
  facts.erase("vm1");
  controller->run_interval();
  EXPECT_FALSE(vm1());
}

TEST_F(CpuShareControllerTest, AProcessTheConfigNamesIsAMemberWithoutASession) {
  Child hypervisor;
  facts["vm1"].config_pid = hypervisor.pid();
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
  controller->run_interval();
  ASSERT_TRUE(vm1());
  EXPECT_TRUE(vm1()->managed);
  EXPECT_GE(vm1()->threads, 1u);
  facts["vm1"].config_pid = 0;
  controller->run_interval();
  EXPECT_FALSE(vm1());
}

TEST_F(CpuShareControllerTest, MetricsNameEveryVm) {
  Child guest;
  auto token = controller->join("vm1", guest.pid(), 0);
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
  controller->run_interval();
  const std::string text = controller->metrics_text();
  EXPECT_NE(text.find("malv_vm_cpu_weight{vm=\"vm1\"} 100"), std::string::npos) << text;
  EXPECT_NE(text.find("malv_vm_cpu_managed{vm=\"vm1\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE malv_vm_cpu_seconds_total counter"), std::string::npos);
}

// A thread that sleeps until told to stop: an accelerator worker.
class Worker {
 public:
  Worker() {
    thread_ = std::thread([this] {
      tid_.store(::gettid());
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_; });
    });
    while (tid_.load() == 0) std::this_thread::yield();
  }
  ~Worker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  pid_t tid() const { return tid_.load(); }

 private:
  std::atomic<pid_t> tid_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

TEST_F(CpuShareControllerTest, TheAcceleratorsBatchWorkersLeaveACoreDedicatedToALatencyVm) {
  Result<std::vector<int>> all = thread_affinity(0);
  ASSERT_TRUE(all.ok());
  if (all->size() < 2) GTEST_SKIP() << "one core: none can be dedicated";
  Worker worker;
  pid_t gone = 0;  // a worker that exited: skipped with a warning, the others still move
  std::thread([&gone] { gone = ::gettid(); }).join();
  start({gone, worker.tid()});
  Child guest;
  auto token = controller->join("vm1", guest.pid(), 0);
  controller->run_interval();  // on none: nothing is dedicated
  EXPECT_EQ(controller->batch_worker_cpus(), *all);
  EXPECT_EQ(*thread_affinity(worker.tid()), *all);

  facts["vm1"].priority_class = MALV_PRIORITY_LATENCY;
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
  controller->run_interval();
  ASSERT_EQ(vm1()->cpus.size(), 1u) << controller->mechanism();
  std::vector<int> shared = *all;
  std::erase(shared, vm1()->cpus[0]);
  EXPECT_EQ(controller->batch_worker_cpus(), shared);
  EXPECT_EQ(*thread_affinity(worker.tid()), shared);
  EXPECT_NE(
      controller->metrics_text().find(fmt::format("malv_cpu_batch_worker_cores {}", shared.size())),
      std::string::npos)
      << controller->metrics_text();

  // The VM back on none: its core is everyone's again.
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "builtin/none").ok());
  controller->run_interval();
  EXPECT_EQ(*thread_affinity(worker.tid()), *all);

  // A controller that stops gives every core back.
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
  controller->run_interval();
  EXPECT_EQ(*thread_affinity(worker.tid()), shared);
  token.reset();
  controller.reset();
  EXPECT_EQ(*thread_affinity(worker.tid()), *all);
}

// A host confined to some cores (malv serve --host-cpus): its workers stay
// on those cores whatever the controller does, and the VMs keep them all.
TEST_F(CpuShareControllerTest, BatchWorkersKeepToTheHostsOwnCores) {
  Result<std::vector<int>> all = thread_affinity(0);
  ASSERT_TRUE(all.ok());
  if (all->size() < 2) GTEST_SKIP() << "one core: nothing to confine the host to";
  const std::vector<int> home = {all->back()};  // the core a latency VM gets first
  Worker worker;
  ASSERT_TRUE(set_thread_affinity(worker.tid(), home).ok());
  start({worker.tid()}, home);
  Child guest;
  auto token = controller->join("vm1", guest.pid(), 0);
  controller->run_interval();
  EXPECT_EQ(controller->batch_worker_cpus(), home);
  EXPECT_EQ(*thread_affinity(worker.tid()), home);

  // A latency VM given the host's only core: the workers move to the
  // cores left rather than to none, and come home when it leaves.
  facts["vm1"].priority_class = MALV_PRIORITY_LATENCY;
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "class").ok());
  controller->run_interval();
  ASSERT_EQ(vm1()->cpus, home) << controller->mechanism();
  std::vector<int> shared = *all;
  std::erase(shared, home[0]);
  EXPECT_EQ(*thread_affinity(worker.tid()), shared);
  ASSERT_TRUE(registry.select("vm1", mlaas::PolicyClass::kCpuSched, "builtin/none").ok());
  controller->run_interval();
  EXPECT_EQ(*thread_affinity(worker.tid()), home);

  // A controller that stops leaves them at home, not on every core.
  token.reset();
  controller.reset();
  EXPECT_EQ(*thread_affinity(worker.tid()), home);
}

}  // namespace
}  // namespace malv::cpu_control
