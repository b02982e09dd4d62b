// Guardrails: late, failing and invalid decisions fall back to the baseline,
// are counted, and switch the module off for the VM after N in a row.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>

#include <algorithm>
#include <vector>

#include "base/log.h"
#include "mlaas/baselines.h"
#include "test_modules.h"

namespace malv::mlaas::testing {
namespace {

class PolicyRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = host.registry.load_module(test_module("good"));
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  }

  DecisionReport decide(const std::string& vm, std::vector<malv_gpu_sched_decision>& scores) {
    std::vector<malv_gpu_sched_observation> items{gpu_item(1, 100), gpu_item(1, 200),
                                                  gpu_item(2, 300)};
    scores.assign(items.size(), {});
    return host.runner.decide(vm, std::span(items), std::span(scores));
  }

  // Decides once with `policy` selected; expects the baseline's answer.
  void expect_fallback(const std::string& policy, FailureKind kind) {
    ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, policy).ok());
    std::vector<malv_gpu_sched_decision> scores;
    DecisionReport report = decide("vm1", scores);
    EXPECT_EQ(report.source, DecisionSource::kFallback) << policy;
    EXPECT_EQ(report.failure, kind) << policy << ": " << report.detail;
    EXPECT_EQ(report.policy, "test_policies/" + policy);
    // fifo's scores: enqueue times.
    EXPECT_EQ(scores[0].score, 100.0);
    EXPECT_EQ(scores[1].score, 200.0);
    EXPECT_EQ(scores[2].score, 300.0);
    PolicyCounters c = host.runner.counters("vm1", "test_policies");
    EXPECT_EQ(c.decisions, 1u);
    EXPECT_EQ(c.fallbacks, 1u);
  }

  MlaasHost host;
};

TEST_F(PolicyRunnerTest, AHealthyPolicyDecidesAndIsCounted) {
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "newest-first").ok());
  std::vector<malv_gpu_sched_decision> scores;
  DecisionReport report = decide("vm1", scores);
  EXPECT_EQ(report.source, DecisionSource::kPolicy);
  EXPECT_EQ(lowest_score(scores), 2u);
  PolicyCounters c = host.runner.counters("vm1", "test_policies");
  EXPECT_EQ(c.decisions, 1u);
  EXPECT_EQ(c.fallbacks, 0u);
}

TEST_F(PolicyRunnerTest, ADecisionPastTheTimeBudgetFallsBackToTheBaseline) {
  host.runner.set_options(GuardrailOptions{std::chrono::microseconds(50), 5});
  expect_fallback("sleepy", FailureKind::kLate);
  EXPECT_EQ(host.runner.counters("vm1", "test_policies").late, 1u);
}

TEST_F(PolicyRunnerTest, AnOutOfRangeScoreFallsBackToTheBaseline) {
  expect_fallback("out-of-range", FailureKind::kInvalid);
  EXPECT_EQ(host.runner.counters("vm1", "test_policies").invalid, 1u);
}

TEST_F(PolicyRunnerTest, ANanScoreFallsBackToTheBaseline) {
  expect_fallback("nan", FailureKind::kInvalid);
}

TEST_F(PolicyRunnerTest, AnErrorStatusFallsBackToTheBaseline) {
  expect_fallback("erroring", FailureKind::kError);
  EXPECT_EQ(host.runner.counters("vm1", "test_policies").errors, 1u);
}

TEST_F(PolicyRunnerTest, ADecisionLeftUnwrittenFallsBackToTheBaseline) {
  expect_fallback("partial", FailureKind::kInvalid);
}

TEST_F(PolicyRunnerTest, APrefetchDepthPastTheCapIsInvalid) {
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kPrefetch, "too-deep").ok());
  malv_prefetch_observation stream{};
  stream.max_depth = 4;
  malv_prefetch_decision depth{};
  DecisionReport report = host.runner.decide("vm1", std::span(&stream, 1), std::span(&depth, 1));
  EXPECT_EQ(report.source, DecisionSource::kFallback);
  EXPECT_EQ(depth.depth, kBaselinePrefetchDepth);
}

TEST_F(PolicyRunnerTest, AfterNFailuresInARowTheModuleIsSwitchedOffForThatVmWithAWarning) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  log::logger().sinks().push_back(sink);
  host.runner.set_options(GuardrailOptions{std::chrono::milliseconds(20), 3});
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "erroring").ok());
  ASSERT_TRUE(host.registry.select("vm2", PolicyClass::kGpuSched, "erroring").ok());
  std::vector<malv_gpu_sched_decision> scores;
  EXPECT_FALSE(decide("vm1", scores).disabled);
  EXPECT_FALSE(decide("vm1", scores).disabled);
  DecisionReport third = decide("vm1", scores);
  log::logger().sinks().pop_back();
  EXPECT_TRUE(third.disabled);
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kGpuSched), "builtin/fifo");
  EXPECT_EQ(host.registry.selected("vm2", PolicyClass::kGpuSched), "test_policies/erroring");
  EXPECT_EQ(decide("vm1", scores).source, DecisionSource::kBaseline);

  PolicyCounters c = host.runner.counters("vm1", "test_policies");
  EXPECT_EQ(c.decisions, 3u);
  EXPECT_EQ(c.fallbacks, 3u);
  EXPECT_EQ(c.disables, 1u);
  EXPECT_EQ(host.runner.counters("vm2", "test_policies").decisions, 0u);

  auto lines = sink->last_formatted();
  bool warned = std::any_of(lines.begin(), lines.end(), [](const std::string& line) {
    return line.find("switched off") != std::string::npos && line.find("vm1") != std::string::npos;
  });
  EXPECT_TRUE(warned);
}

TEST_F(PolicyRunnerTest, FailuresThatAreNotConsecutiveDoNotSwitchTheModuleOff) {
  host.runner.set_options(GuardrailOptions{std::chrono::milliseconds(20), 2});
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "alternating").ok());
  std::vector<malv_gpu_sched_decision> scores;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(decide("vm1", scores).disabled);
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kGpuSched), "test_policies/alternating");
  PolicyCounters c = host.runner.counters("vm1", "test_policies");
  EXPECT_EQ(c.decisions, 10u);
  EXPECT_EQ(c.fallbacks, 5u);
  EXPECT_EQ(c.disables, 0u);
}

TEST_F(PolicyRunnerTest, ReselectingAfterASwitchOffStartsAFreshCount) {
  host.runner.set_options(GuardrailOptions{std::chrono::milliseconds(20), 2});
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "erroring").ok());
  std::vector<malv_gpu_sched_decision> scores;
  decide("vm1", scores);
  EXPECT_TRUE(decide("vm1", scores).disabled);
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "erroring").ok());
  EXPECT_FALSE(decide("vm1", scores).disabled);
  EXPECT_TRUE(decide("vm1", scores).disabled);
  EXPECT_EQ(host.runner.counters("vm1", "test_policies").disables, 2u);
}

TEST_F(PolicyRunnerTest, FeedbackReachesTheSelectedPolicy) {
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "feedback-count").ok());
  std::vector<malv_gpu_sched_outcome> outcomes(3);
  host.runner.feedback("vm1", std::span<const malv_gpu_sched_outcome>(outcomes));
  host.runner.feedback("vm1", std::span<const malv_gpu_sched_outcome>(outcomes).first(1));
  std::vector<malv_gpu_sched_decision> scores;
  decide("vm1", scores);
  EXPECT_EQ(scores[0].score, 4.0);
  EXPECT_EQ(host.runner.counters("vm1", "test_policies").feedbacks, 2u);
}

TEST_F(PolicyRunnerTest, BaselineDecisionsAreCountedUnderBuiltin) {
  std::vector<malv_gpu_sched_decision> scores;
  EXPECT_EQ(decide("vm9", scores).source, DecisionSource::kBaseline);
  EXPECT_EQ(host.runner.counters("vm9", "builtin").decisions, 1u);
  auto rows = host.runner.all_counters();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].vm, "vm9");
}

TEST(PolicyRunnerPick, LowestScoreBreaksTiesByIndex) {
  std::vector<malv_gpu_sched_decision> scores{{3.0}, {1.0}, {1.0}};
  EXPECT_EQ(lowest_score(scores), 1u);
  std::vector<malv_memory_decision> evict{{3.0}, {5.0}, {5.0}};
  EXPECT_EQ(highest_evict_score(evict), 1u);
}

}  // namespace
}  // namespace malv::mlaas::testing
