// malv_sched_basic: fifo, fair-share, priority and learned-sjf decide what
// their descriptions claim.
#include <gtest/gtest.h>

#include <cmath>

#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

using SchedBasic = PolicyHost;

TEST_F(SchedBasic, TheModuleOffersItsFourGpuSchedPolicies) {
  auto modules = registry.modules();
  auto it = std::find_if(modules.begin(), modules.end(),
                         [](const ModuleInfo& m) { return m.name == "malv_sched_basic"; });
  ASSERT_NE(it, modules.end());
  std::vector<std::string> names;
  for (const PolicyInfo& p : it->policies) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fifo", "fair-share", "priority", "learned-sjf"}));
}

TEST_F(SchedBasic, FifoRunsTheOldestItemFirst) {
  EXPECT_EQ(pick("malv_sched_basic/fifo", {item(1, 300), item(2, 100), item(3, 200)}), 1u);
}

TEST_F(SchedBasic, FairSharePicksTheVmWithTheLowestBusyTimePerWeight) {
  auto a = item(1, 100);  // oldest, but has used the most per weight
  a.vm_busy_ns = 9'000'000;
  a.vm_weight = 1.0;
  auto b = item(2, 200);  // 12 ms at weight 4 = 3 ms per unit: lowest
  b.vm_busy_ns = 12'000'000;
  b.vm_weight = 4.0;
  auto c = item(3, 300);  // 5 ms at weight 1
  c.vm_busy_ns = 5'000'000;
  EXPECT_EQ(pick("fair-share", {a, b, c}), 1u);
  b.vm_weight = 1.0;  // now 12 ms per unit: c is lowest
  EXPECT_EQ(pick("fair-share", {a, b, c}), 2u);
}

TEST_F(SchedBasic, OnlyPriorityMarksWorkUrgentAndOnlyLatencyOrAgedWork) {
  auto batch = item(1, 100);
  batch.priority_class = MALV_PRIORITY_BATCH;
  batch.waited_ns = 1'000'000;  // not aged
  auto aged = item(1, 50);
  aged.priority_class = MALV_PRIORITY_BATCH;
  aged.waited_ns = 30'000'000;  // past the 20 ms aging
  auto latency = item(2, 900);
  latency.priority_class = MALV_PRIORITY_LATENCY;
  const std::vector<malv_gpu_sched_observation> items{batch, aged, latency};
  const auto scores = [&](const std::string& policy) {
    EXPECT_TRUE(registry.select("host", PolicyClass::kGpuSched, policy).ok()) << policy;
    std::vector<malv_gpu_sched_decision> out(items.size());
    runner.decide("host", std::span(items), std::span(out));
    return out;
  };
  const auto priority = scores("priority");
  EXPECT_GE(priority[0].score, 0) << "fresh batch work is not urgent";
  EXPECT_LT(priority[1].score, 0) << "aged batch work competes as urgent";
  EXPECT_LT(priority[2].score, 0) << "latency work is urgent";
  EXPECT_LT(priority[1].score, priority[2].score) << "urgent items keep their time order";
  for (const std::string policy : {"malv_sched_basic/fifo", "fair-share"}) {
    for (const auto& d : scores(policy)) EXPECT_GE(d.score, 0) << policy;
  }
}

TEST_F(SchedBasic, PriorityRunsLatencyWorkBeforeOlderBatchWork) {
  auto batch = item(1, 100);
  batch.priority_class = MALV_PRIORITY_BATCH;
  batch.waited_ns = 1'000'000;  // 1 ms: not aged
  auto latency = item(2, 900);
  latency.priority_class = MALV_PRIORITY_LATENCY;
  EXPECT_EQ(pick("priority", {batch, latency}), 1u);
}

TEST_F(SchedBasic, PrioritySharesBetweenBatchVmsByBusyTimePerWeight) {
  // Both unaged, same decision time (enqueue + waited): the VM that used
  // less of its weighted share goes first even though its item is newer.
  auto heavy = item(1, 100);
  heavy.priority_class = MALV_PRIORITY_BATCH;
  heavy.waited_ns = 900;
  heavy.vm_busy_ns = 4'000'000;
  heavy.vm_weight = 2.0;  // 2 ms per unit of weight
  auto light = item(2, 500);
  light.priority_class = MALV_PRIORITY_BATCH;
  light.waited_ns = 500;
  light.vm_busy_ns = 1'000'000;
  light.vm_weight = 1.0;  // 1 ms per unit of weight
  EXPECT_EQ(pick("priority", {heavy, light}), 1u);
  light.vm_busy_ns = 3'000'000;  // now 3 ms per unit: the heavy VM's turn
  EXPECT_EQ(pick("priority", {heavy, light}), 0u);
  // Any latency item still comes before both.
  auto latency = item(3, 990);
  latency.priority_class = MALV_PRIORITY_LATENCY;
  latency.waited_ns = 10;
  EXPECT_EQ(pick("priority", {heavy, light, latency}), 2u);
}

TEST_F(SchedBasic, PriorityPromotesABatchItemThatWaitedPastTheAgingThreshold) {
  auto batch = item(1, 100);
  batch.priority_class = MALV_PRIORITY_BATCH;
  batch.waited_ns = 25'000'000;  // 25 ms > 20 ms
  auto latency = item(2, 900);
  latency.priority_class = MALV_PRIORITY_LATENCY;
  latency.waited_ns = 100;
  EXPECT_EQ(pick("priority", {batch, latency}), 0u);
}

// Items of two kinds with identical size estimates: kernel 2 really runs
// for 2 us, kernel 3 for 2 ms.
malv_gpu_sched_observation kind(std::uint32_t kernel, std::int64_t enqueue_ns) {
  auto o = item(1, enqueue_ns);
  o.kernel_id = kernel;
  return o;
}

TEST_F(SchedBasic, LearnedSjfLearnsFromFeedbackThatAKindOfItemIsShortAndRanksItFirst) {
  ASSERT_TRUE(registry.select("host", PolicyClass::kGpuSched, "learned-sjf").ok());
  std::vector<malv_gpu_sched_observation> pending{kind(3, 100), kind(2, 200)};
  pending[0].waited_ns = 200;
  pending[1].waited_ns = 100;

  std::vector<malv_gpu_sched_outcome> outcomes;
  for (int i = 0; i < 200; ++i) {
    outcomes.push_back({kind(2, i), 2'000});
    outcomes.push_back({kind(3, i), 2'000'000});
  }
  runner.feedback("host", std::span<const malv_gpu_sched_outcome>(outcomes));

  std::vector<malv_gpu_sched_decision> scores(2);
  runner.decide("host", std::span(pending), std::span(scores));
  EXPECT_EQ(lowest_score(scores), 1u);
  // Predictions (score + waited) are close to what was observed.
  EXPECT_NEAR(std::log(scores[1].score + 100), std::log(2'000.0), 0.5);
  EXPECT_NEAR(std::log(scores[0].score + 200), std::log(2'000'000.0), 0.5);
}

TEST_F(SchedBasic, LearnedSjfNeverStarvesALongItem) {
  ASSERT_TRUE(registry.select("host", PolicyClass::kGpuSched, "learned-sjf").ok());
  std::vector<malv_gpu_sched_outcome> outcomes;
  for (int i = 0; i < 200; ++i) {
    outcomes.push_back({kind(2, i), 2'000});
    outcomes.push_back({kind(3, i), 2'000'000});
  }
  runner.feedback("host", std::span<const malv_gpu_sched_outcome>(outcomes));
  // A long item keeps losing to fresh short items only until it has waited
  // about as long as its predicted run time.
  auto long_item = kind(3, 0);
  auto fresh_short = kind(2, 1);
  long_item.waited_ns = 100'000;  // 0.1 ms
  EXPECT_EQ(pick("learned-sjf", {long_item, fresh_short}), 1u);
  long_item.waited_ns = 50'000'000;  // 50 ms
  EXPECT_EQ(pick("learned-sjf", {long_item, fresh_short}), 0u);
}

}  // namespace
}  // namespace malv::mlaas::testing
