// A host with the built-in policy modules loaded, for the policy tests.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"

namespace malv::mlaas::testing {

class PolicyHost : public ::testing::Test {
 protected:
  void SetUp() override {
    EXPECT_EQ(policy_dir(), MALV_TEST_POLICY_DIR);
    auto loaded = registry.load_directory(policy_dir());
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  }

  // Scores items with `policy` (selected for a pseudo-VM "host") and
  // returns the index the scheduler would run.
  std::size_t pick(const std::string& policy,
                   const std::vector<malv_gpu_sched_observation>& items) {
    EXPECT_TRUE(registry.select("host", PolicyClass::kGpuSched, policy).ok()) << policy;
    std::vector<malv_gpu_sched_decision> scores(items.size());
    DecisionReport report = runner.decide("host", std::span(items), std::span(scores));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
    return lowest_score(scores);
  }

  FeatureRegistry features;
  HostServices services{features, nullptr};
  PolicyRegistry registry{services.table()};
  PolicyRunner runner{registry, GuardrailOptions{std::chrono::milliseconds(20), 5}};
};

inline malv_gpu_sched_observation item(std::uint64_t vm, std::int64_t enqueue_ns) {
  malv_gpu_sched_observation o{};
  o.vm_id = vm;
  o.vm_weight = 1.0;
  o.enqueue_time_ns = enqueue_ns;
  o.est_flops = 1e6;
  o.est_bytes = 1e5;
  return o;
}

}  // namespace malv::mlaas::testing
