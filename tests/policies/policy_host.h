// A host with the built-in policy modules loaded, for the policy tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/inference_service.h"
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
  // CPU only; learned policies (learned-sjf) run their models through it.
  InferenceService inference{nullptr, InferenceOptions{.calibrate = false}};
  HostServices services{features, &inference};
  PolicyRegistry registry{services.table()};
  // Answers, not speed: a budget no loaded or sanitized machine runs out of.
  PolicyRunner runner{registry, GuardrailOptions::every_class(std::chrono::seconds(30))};
};

// The buffer ids in the order the memory manager would evict them under
// the VM's selected memory policy (highest score first; the host breaks
// ties by the lower index, as a stable sort does).
inline std::vector<std::uint64_t> eviction_order(
    PolicyRunner& runner, const std::string& vm,
    const std::vector<malv_memory_observation>& buffers) {
  std::vector<malv_memory_decision> scores(buffers.size());
  DecisionReport report = runner.decide(vm, std::span(buffers), std::span(scores));
  EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
  std::vector<std::size_t> index(buffers.size());
  std::iota(index.begin(), index.end(), 0);
  std::stable_sort(index.begin(), index.end(), [&](std::size_t a, std::size_t b) {
    return scores[a].evict_score > scores[b].evict_score;
  });
  std::vector<std::uint64_t> ids;
  for (std::size_t i : index) ids.push_back(buffers[i].buffer_id);
  return ids;
}

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
