// malv_prefetch_learned/learned: for each depth 1..max_depth its model
// (through the host's inference service) predicts the coming stall from
// prefetch_features.h's inputs, and the policy takes the depth whose
// predicted stall plus MALV_PREFETCH_DEPTH_COST a staged batch is least;
// decisions stay in
// [1, max_depth]; a model that is missing, corrupt or of the wrong shape
// makes selection fail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "malv/prefetch_features.h"
#include "mlaas/inference_service.h"
#include "mlaas/mlp.h"
#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

std::string save(const std::string& name, std::vector<DenseLayer> layers) {
  const std::string path = ::testing::TempDir() + name;
  Result<Mlp> mlp = Mlp::create(std::move(layers));
  EXPECT_TRUE(mlp.ok());
  EXPECT_TRUE(mlp->save(path).ok());
  return path;
}

DenseLayer linear(std::size_t in, std::vector<float> weight, Activation act) {
  DenseLayer layer;
  layer.in = in;
  layer.out = 1;
  layer.weight = std::move(weight);
  layer.bias.assign(1, 0.0f);
  layer.activation = act;
  return layer;
}

// Predicted stall = slope * log1p(depth): deeper is worse (> 0) or better (< 0),
// steeply enough that neighbouring depths differ by more than a batch's cost.
std::string depth_model(const std::string& name, float slope) {
  std::vector<float> w(MALV_PREFETCH_FEATURE_COUNT, 0.0f);
  w[7] = slope;
  return save(name, {linear(MALV_PREFETCH_FEATURE_COUNT, w, Activation::kIdentity)});
}

// Predicted stall = relu(log1p(the depth the history asked for) - log1p(depth)):
// none once the depth covers the largest stall seen.
std::string cover_model(const std::string& name) {
  std::vector<float> w(MALV_PREFETCH_FEATURE_COUNT, 0.0f);
  w[2] = 1.0f;
  w[7] = -1.0f;
  return save(name, {linear(MALV_PREFETCH_FEATURE_COUNT, w, Activation::kRelu),
                     linear(1, {1.0f}, Activation::kIdentity)});
}

// A period at 100 batches/s in which the consumer waited stall_ms.
malv_prefetch_observation period(std::uint32_t depth, double stall_ms, std::uint32_t max = 8) {
  malv_prefetch_observation o{};
  o.vm_id = 1;
  o.stream_id = 0;
  o.current_depth = depth;
  o.max_depth = max;
  o.consumption_per_s = 100;
  o.production_per_s = 400;
  o.consumer_stall_ns = static_cast<std::int64_t>(stall_ms * 1e6);
  return o;
}

class PrefetchLearned : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(registry.load_directory(policy_dir()).ok()); }
  void TearDown() override { ::unsetenv("MALV_PREFETCH_LEARNED_MODEL"); }

  Status select_with_model(const std::string& path) {
    ::setenv("MALV_PREFETCH_LEARNED_MODEL", path.c_str(), 1);
    // A fresh instance (selecting the policy in use keeps its instance).
    registry.select_baseline("vm1", PolicyClass::kPrefetch);
    return registry.select("vm1", PolicyClass::kPrefetch, "malv_prefetch_learned/learned");
  }
  std::uint32_t decide(const malv_prefetch_observation& o) {
    malv_prefetch_decision d{};
    DecisionReport report = runner.decide("vm1", std::span(&o, 1), std::span(&d, 1));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
    return d.depth;
  }

  FeatureRegistry features;
  InferenceService inference{nullptr, {.calibrate = false}};
  HostServices services{features, &inference};
  PolicyRegistry registry{services.table()};
  // The model's answers, not its speed: a budget no loaded machine runs out of.
  PolicyRunner runner{registry, GuardrailOptions::every_class(std::chrono::seconds(30))};
};

TEST_F(PrefetchLearned, TheShippedModelLoadsAndDecidesWithinMaxDepth) {
  ::unsetenv("MALV_PREFETCH_LEARNED_MODEL");
  ASSERT_TRUE(registry.select("vm1", PolicyClass::kPrefetch, "malv_prefetch_learned/learned").ok());
  for (std::uint32_t max : {1u, 3u, 8u, 64u}) {
    for (double stall : {0.0, 5.0, 80.0}) {
      const std::uint32_t depth = decide(period(std::min(2u, max), stall, max));
      EXPECT_GE(depth, 1u);
      EXPECT_LE(depth, max);
    }
  }
}

TEST_F(PrefetchLearned, ItTakesTheDepthWhosePredictedStallPlusItsCostIsLeast) {
  ASSERT_TRUE(select_with_model(depth_model("deeper-worse.safetensors", 10.0f)).ok());
  EXPECT_EQ(decide(period(4, 50)), 1u);
  ASSERT_TRUE(select_with_model(depth_model("deeper-better.safetensors", -10.0f)).ok());
  EXPECT_EQ(decide(period(1, 0)), 8u);
}

TEST_F(PrefetchLearned, ItNeverExceedsMaxDepthAndScoresAtMost32Depths) {
  ASSERT_TRUE(select_with_model(depth_model("deeper-better2.safetensors", -10.0f)).ok());
  EXPECT_EQ(decide(period(1, 0, 5)), 5u);
  EXPECT_EQ(decide(period(1, 0, 1)), 1u);
  EXPECT_EQ(decide(period(1, 0, 100)), 32u);
  EXPECT_EQ(decide(period(0, 0, 0)), 0u);  // within [0, max_depth] of a stream with no room
}

TEST_F(PrefetchLearned, AStallAsksForTheDepthThatWouldHaveCoveredIt) {
  ASSERT_TRUE(select_with_model(cover_model("cover.safetensors")).ok());
  EXPECT_EQ(decide(period(2, 0)), 1u);  // nothing stalled: nothing to cover
  // 30 ms at 100 batches/s is 3 steps at depth 2: depth 5 covers it.
  EXPECT_EQ(decide(period(2, 30)), 5u);
  // The history remembers it through calm periods...
  EXPECT_EQ(decide(period(5, 0)), 5u);
  // ... for MALV_PREFETCH_HISTORY periods in all, then forgets it.
  for (int i = 0; i < MALV_PREFETCH_HISTORY - 2; ++i) decide(period(5, 0));
  EXPECT_EQ(decide(period(5, 0)), 1u);
  // Another stream of the VM has its own history.
  malv_prefetch_observation other = period(2, 0);
  other.stream_id = 7;
  EXPECT_EQ(decide(period(3, 60)), 8u);  // 3 + 6 steps asked, capped at max_depth 8
  EXPECT_EQ(decide(other), 1u);
}

TEST_F(PrefetchLearned, AMissingCorruptOrMisshapenModelCannotBeSelected) {
  Status missing = select_with_model(::testing::TempDir() + "no-such-prefetch.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("malv_prefetch_learned/learned"), std::string::npos);
  EXPECT_NE(missing.error().message().find("create() failed"), std::string::npos);

  const std::string corrupt = ::testing::TempDir() + "corrupt-prefetch.safetensors";
  {
    std::ofstream out(corrupt, std::ios::binary);
    out << "\x10\x00\x00\x00\x00\x00\x00\x00{\"not\": \"a model\"";
  }
  EXPECT_FALSE(select_with_model(corrupt).ok());
  std::vector<float> w(4, 0.0f);
  EXPECT_FALSE(
      select_with_model(save("misshapen.safetensors", {linear(4, w, Activation::kIdentity)})).ok());
  // The VM keeps the baseline (fixed: min(2, max_depth)).
  malv_prefetch_observation o = period(1, 10);
  malv_prefetch_decision d{};
  EXPECT_EQ(runner.decide("vm1", std::span(&o, 1), std::span(&d, 1)).source,
            DecisionSource::kBaseline);
  EXPECT_EQ(d.depth, 2u);
}

TEST(PrefetchFeatures, StallsAreCountedInConsumerStepsAndRemembered) {
  malv_prefetch_history h{};
  malv_prefetch_observation o = period(2, 30);  // 3 steps
  malv_prefetch_history_push(&h, &o);
  float in[MALV_PREFETCH_FEATURE_COUNT];
  malv_prefetch_features(&h, &o, 4, in);
  EXPECT_FLOAT_EQ(in[0], static_cast<float>(std::log1p(3.0)));
  EXPECT_FLOAT_EQ(in[1], static_cast<float>(std::log1p(3.0)));
  EXPECT_FLOAT_EQ(in[2], static_cast<float>(std::log1p(5.0)));  // depth 2 + 3 steps
  EXPECT_FLOAT_EQ(in[3], 1.0f);
  EXPECT_FLOAT_EQ(in[4], static_cast<float>(std::log(100.0 / 400.0)));
  EXPECT_FLOAT_EQ(in[5], 0.0f);
  EXPECT_FLOAT_EQ(in[6], static_cast<float>(std::log1p(2.0)));
  EXPECT_FLOAT_EQ(in[7], static_cast<float>(std::log1p(4.0)));
  EXPECT_FLOAT_EQ(in[8], static_cast<float>(std::log1p(1.0)));  // 5 asked, 4 offered
  o = period(5, 0);
  malv_prefetch_history_push(&h, &o);
  malv_prefetch_features(&h, &o, 1, in);
  EXPECT_FLOAT_EQ(in[0], 0.0f);
  EXPECT_FLOAT_EQ(in[1], static_cast<float>(std::log1p(3.0)));
  EXPECT_FLOAT_EQ(in[3], 0.5f);
  EXPECT_FLOAT_EQ(in[5], static_cast<float>(std::log1p(1.0)));
}

}  // namespace
}  // namespace malv::mlaas::testing
