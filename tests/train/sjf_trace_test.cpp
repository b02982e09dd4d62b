// learned-sjf's traces: rows become include/malv/sjf_features.h's inputs and
// target, bad rows are refused naming the line, and inputs the trace never
// varied are neutralised without changing any prediction on its rows.
#include "train/sjf_trace.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "malv/sjf_features.h"

namespace malv::train {
namespace {

constexpr const char* kHeader =
    "kernel_id,priority_class,est_flops,est_bytes,queue_id,waited_ns,run_ns\n";

TEST(SjfTrace, RowsBecomeTheFeaturesThePolicyComputesAndTheTarget) {
  FeatureTable trace =
      parse_feature_csv(std::string(kHeader) + "2,1,1000000,12000,3,5,250000\n0,0,0,4096,1,0,900\n",
                        "t.csv")
          .value();
  FeatureTable table = sjf_feature_table(trace).value();
  ASSERT_EQ(table.rows(), 2u);
  ASSERT_EQ(table.columns.size(), MALV_SJF_FEATURE_COUNT + 1u);
  EXPECT_EQ(table.columns.back(), kSjfTargetColumn);
  malv_gpu_sched_observation o{};
  o.kernel_id = 2;
  o.priority_class = 1;
  o.est_flops = 1e6;
  o.est_bytes = 12000;
  float x[MALV_SJF_FEATURE_COUNT];
  malv_sjf_features(&o, x);
  for (int c = 0; c < MALV_SJF_FEATURE_COUNT; ++c) EXPECT_EQ(table.at(0, c), x[c]) << c;
  EXPECT_FLOAT_EQ(table.at(0, MALV_SJF_FEATURE_COUNT), (std::log(250000.0) - 12.0) / 4.0);
  EXPECT_NEAR(malv_sjf_predicted_ns(table.at(1, MALV_SJF_FEATURE_COUNT)), 900.0, 1.0);
  EXPECT_EQ(table.at(1, 3), 1.0f);  // kernel 0's one-hot
}

TEST(SjfTrace, BadRowsAreRefusedNamingTheLine) {
  auto refused = [](const std::string& row, const std::string& needle) {
    FeatureTable trace =
        parse_feature_csv(std::string(kHeader) + "2,0,1,1,1,0,10\n" + row, "t.csv").value();
    Result<FeatureTable> table = sjf_feature_table(trace);
    ASSERT_FALSE(table.ok()) << row;
    EXPECT_NE(table.error().message().find("t.csv:3"), std::string::npos)
        << table.error().message();
    EXPECT_NE(table.error().message().find(needle), std::string::npos) << table.error().message();
  };
  refused("2,0,1,1,1,0,0\n", "run_ns 0 must be > 0");
  refused("2,0,1,1,1,0,-4\n", "must be > 0");
  refused("2,2,1,1,1,0,10\n", "priority_class 2");
  refused("2.5,0,1,1,1,0,10\n", "kernel_id");
  refused("2,0,-1,1,1,0,10\n", "negative");
  FeatureTable no_run =
      parse_feature_csv("kernel_id,priority_class,est_flops,est_bytes\n1,0,1,1\n", "n.csv").value();
  EXPECT_NE(sjf_feature_table(no_run).error().message().find("run_ns"), std::string::npos);
}

TEST(SjfTrace, ConstantInputsAreNeutralisedWithoutChangingPredictionsOnTheRows) {
  // A trace where only gemm (kernel 2) and priority 0 ever occur.
  std::mt19937 rng(3);
  std::string csv = kHeader;
  for (int i = 0; i < 50; ++i) {
    const double n = 16 + static_cast<double>(rng() % 500);
    csv += std::to_string(2) + ",0," + std::to_string(2 * n * n * n) + "," +
           std::to_string(12 * n * n) + ",1,0," + std::to_string(1000 + rng() % 100000) + "\n";
  }
  FeatureTable table = sjf_feature_table(parse_feature_csv(csv, "g.csv").value()).value();
  std::normal_distribution<float> w(0.0f, 0.5f);
  std::vector<mlaas::DenseLayer> layers(2);
  layers[0] = {MALV_SJF_FEATURE_COUNT, 8, {}, {}, mlaas::Activation::kRelu};
  layers[1] = {8, 1, {}, {}, mlaas::Activation::kIdentity};
  for (auto& l : layers) {
    l.weight.resize(l.in * l.out);
    for (float& v : l.weight) v = w(rng);
    l.bias.resize(l.out);
    for (float& v : l.bias) v = w(rng);
  }
  const mlaas::Mlp model = mlaas::Mlp::create(layers).value();
  const mlaas::Mlp neutral = neutralise_constant_inputs(model, table).value();
  std::vector<float> x(MALV_SJF_FEATURE_COUNT);
  for (std::size_t r = 0; r < table.rows(); ++r) {
    for (int c = 0; c < MALV_SJF_FEATURE_COUNT; ++c) x[c] = table.at(r, c);
    float a = 0, b = 0;
    model.infer_cpu(x.data(), 1, &a);
    neutral.infer_cpu(x.data(), 1, &b);
    EXPECT_NEAR(a, b, 1e-4f * (1 + std::abs(a)));
  }
  // Another kernel or priority class no longer shifts the prediction.
  for (int c = 0; c < MALV_SJF_FEATURE_COUNT; ++c) x[c] = table.at(0, c);
  float base = 0, other = 0;
  neutral.infer_cpu(x.data(), 1, &base);
  x[2] = 1.0f;   // batch class
  x[3 + 2] = 0;  // not gemm
  x[3 + 9] = 1;  // kernel 9
  neutral.infer_cpu(x.data(), 1, &other);
  EXPECT_FLOAT_EQ(other, base);
  // The varying inputs (flops, bytes) keep their weights.
  EXPECT_NE(neutral.layers()[0].weight[0], 0.0f);
}

}  // namespace
}  // namespace malv::train
