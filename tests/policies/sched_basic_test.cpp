// malv_sched_basic: fifo, fair-share and learned-sjf decide what their
// descriptions claim, ordering one VM's own items with scores >= 0.
#include <gtest/gtest.h>

#include <cmath>

#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

using SchedBasic = PolicyHost;

TEST_F(SchedBasic, TheModuleOffersItsThreeGpuSchedPolicies) {
  auto modules = registry.modules();
  auto it = std::find_if(modules.begin(), modules.end(),
                         [](const ModuleInfo& m) { return m.name == "malv_sched_basic"; });
  ASSERT_NE(it, modules.end());
  std::vector<std::string> names;
  for (const PolicyInfo& p : it->policies) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fifo", "fair-share", "learned-sjf"}));
}

TEST_F(SchedBasic, FifoRunsTheOldestItemFirst) {
  EXPECT_EQ(pick("malv_sched_basic/fifo", {item(1, 300), item(2, 100), item(3, 200)}), 1u);
}

TEST_F(SchedBasic, FairSharePicksTheStreamWithTheLeastBusyTime) {
  auto a = item(1, 100);  // oldest, but its stream has used the most
  a.queue_busy_ns = 9'000'000;
  auto b = item(1, 200);
  b.queue_busy_ns = 3'000'000;
  auto c = item(1, 300);
  c.queue_busy_ns = 5'000'000;
  EXPECT_EQ(pick("fair-share", {a, b, c}), 1u);
  b.queue_busy_ns = 12'000'000;  // now c's stream has used the least
  EXPECT_EQ(pick("fair-share", {a, b, c}), 2u);
}

TEST_F(SchedBasic, ScoresAreRanksNeverNegativeAndPriorityIsNoLongerAVmPolicy) {
  auto batch = item(1, 100);
  batch.waited_ns = 1'000'000;
  auto latency = item(1, 900);
  latency.priority_class = MALV_PRIORITY_LATENCY;
  const std::vector<malv_gpu_sched_observation> items{batch, latency};
  for (const std::string policy : {"malv_sched_basic/fifo", "fair-share"}) {
    ASSERT_TRUE(registry.select("host", PolicyClass::kGpuSched, policy).ok()) << policy;
    std::vector<malv_gpu_sched_decision> out(items.size());
    const DecisionReport report = runner.decide("host", std::span(items), std::span(out));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << policy;
    for (const auto& d : out) EXPECT_GE(d.score, 0) << policy;
  }
  // priority is the scheduler's host level now: selecting it for a VM says so.
  const Status refused = registry.select("host", PolicyClass::kGpuSched, "priority");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("host level"), std::string::npos)
      << refused.error().message();
}

TEST_F(SchedBasic, ANegativeScoreIsAFailedDecisionAndTheBaselineDecides) {
  std::vector<malv_gpu_sched_decision> negative{{5.0}, {-1.0}};
  const Status checked = validate_decisions(PolicyClass::kGpuSched, nullptr, negative.data(), 2);
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.error().message().find("negative"), std::string::npos)
      << checked.error().message();
}

// learned-sjf's tests are in learned_sjf_test.cpp (it needs the host's model
// service, which this host does not have).

}  // namespace
}  // namespace malv::mlaas::testing
