// malv_memory_learned: the `learned` policy evicts the buffer whose next use
// is furthest: known for queued buffers, predicted by its model (through the
// host's inference service) from the reuse history for the others; a model
// that is missing or has the wrong shape makes selection fail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>

#include "malv/memory_features.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"
#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

// The v3 layout: the v2 fields unchanged, the history after them.
static_assert(offsetof(malv_memory_observation, reserved) == 68);
static_assert(offsetof(malv_memory_observation, ops_since_use) == 72);
static_assert(offsetof(malv_memory_observation, reuse_gaps) == 80);
static_assert(offsetof(malv_memory_observation, gap_count) == 144);
static_assert(offsetof(malv_memory_observation, reserved2) == 148);
static_assert(sizeof(malv_memory_observation) == 152);
static_assert(sizeof(malv_memory_outcome) == 160);

// A one-layer model whose output is feature `pick` (weight 1, no bias).
std::string write_model(const std::string& name, std::size_t inputs, std::size_t pick) {
  DenseLayer layer;
  layer.in = inputs;
  layer.out = 1;
  layer.weight.assign(inputs, 0.0f);
  layer.weight[pick] = 1.0f;
  layer.bias.assign(1, 0.0f);
  const std::string path = ::testing::TempDir() + name;
  Result<Mlp> mlp = Mlp::create({layer});
  EXPECT_TRUE(mlp.ok());
  EXPECT_TRUE(mlp->save(path).ok());
  return path;
}

// A buffer last used `age` ops ago whose uses were `gap` ops apart.
malv_memory_observation periodic(std::uint64_t id, std::uint64_t gap, std::uint64_t age) {
  malv_memory_observation o{};
  o.vm_id = 1;
  o.buffer_id = id;
  o.bytes = 4096;
  o.next_use_ops = MALV_MEMORY_NOT_QUEUED;
  o.next_use_ns = -1;
  o.ops_since_use = age;
  o.gap_count = MALV_MEMORY_GAP_HISTORY;
  for (std::uint64_t& g : o.reuse_gaps) g = gap;
  return o;
}

class MemoryLearned : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(registry.load_directory(policy_dir()).ok()); }
  void TearDown() override { ::unsetenv("MALV_MEMORY_LEARNED_MODEL"); }

  Status select_with_model(const std::string& path) {
    ::setenv("MALV_MEMORY_LEARNED_MODEL", path.c_str(), 1);
    return registry.select("vm1", PolicyClass::kMemory, "malv_memory_learned/learned");
  }

  // Buffer ids, highest score (evicted first) first.
  std::vector<std::uint64_t> eviction_order(const std::vector<malv_memory_observation>& buffers) {
    return testing::eviction_order(runner, "vm1", buffers);
  }

  FeatureRegistry features;
  InferenceService inference{nullptr, {.calibrate = false}};
  HostServices services{features, &inference};
  PolicyRegistry registry{services.table()};
  // The model's answers, not its speed: a budget no loaded machine (ASan,
  // tests beside it) runs out of, so the baseline never decides by chance.
  PolicyRunner runner{registry, GuardrailOptions::every_class(std::chrono::seconds(30))};
};

TEST_F(MemoryLearned, UnqueuedBuffersGoInTheOrderTheModelPredictsTheirNextUse) {
  // Feature 1 is log1p(gap - age): the next use a period of one use predicts.
  ASSERT_TRUE(
      select_with_model(write_model("period1.safetensors", MALV_MEMORY_FEATURE_COUNT, 1)).ok());
  // Next uses predicted 90, 5, 400 and 20 ops ahead.
  EXPECT_EQ(eviction_order({periodic(1, 100, 10), periodic(2, 10, 5), periodic(3, 500, 100),
                            periodic(4, 30, 10)}),
            (std::vector<std::uint64_t>{3, 1, 4, 2}));
}

TEST_F(MemoryLearned, AQueuedBufferCountsItsKnownDistanceNotThePrediction) {
  ASSERT_TRUE(
      select_with_model(write_model("period1b.safetensors", MALV_MEMORY_FEATURE_COUNT, 1)).ok());
  malv_memory_observation soon = periodic(1, 1000, 1);  // predicted 999 ops ahead
  soon.next_use_ops = 2;                                // but queued work uses it next-but-two
  soon.next_use_ns = 100;
  EXPECT_EQ(eviction_order({soon, periodic(2, 50, 10)}), (std::vector<std::uint64_t>{2, 1}));
}

TEST_F(MemoryLearned, ItsScoresMatchTheFeaturesItWasGiven) {
  ASSERT_TRUE(
      select_with_model(write_model("period2.safetensors", MALV_MEMORY_FEATURE_COUNT, 2)).ok());
  malv_memory_observation o = periodic(1, 0, 7);
  o.gap_count = 3;
  o.reuse_gaps[0] = 10;
  o.reuse_gaps[1] = 200;  // the period-2 prediction: 200 - 7
  o.reuse_gaps[2] = 10;
  float in[MALV_MEMORY_FEATURE_COUNT];
  malv_memory_features(&o, in);
  EXPECT_FLOAT_EQ(in[2], static_cast<float>(std::log1p(193.0)));
  EXPECT_FLOAT_EQ(in[6], 2.0f);  // period 2 needs 4 known gaps
  std::vector<malv_memory_decision> scores(1);
  std::vector<malv_memory_observation> one{o};
  DecisionReport report = runner.decide("vm1", std::span(one), std::span(scores));
  ASSERT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
  EXPECT_NEAR(scores[0].evict_score, std::log1p(193.0), 1e-4);
}

TEST_F(MemoryLearned, AMissingModelOrOneOfTheWrongShapeCannotBeSelected) {
  Status missing = select_with_model(::testing::TempDir() + "no-such-model.safetensors");
  EXPECT_FALSE(missing.ok());
  Status wrong = select_with_model(write_model("wrong.safetensors", 4, 0));
  EXPECT_FALSE(wrong.ok());
  // The VM keeps the baseline.
  malv_memory_observation o = periodic(1, 10, 1);
  std::vector<malv_memory_observation> one{o};
  std::vector<malv_memory_decision> scores(1);
  EXPECT_EQ(runner.decide("vm1", std::span(one), std::span(scores)).source,
            DecisionSource::kBaseline);
}

}  // namespace
}  // namespace malv::mlaas::testing
