// Export of a trained nn::Mlp as an MLaaS model: the exported model's
// infer_cpu gives what the nn model gives on the same inputs, value by value
// (within float rounding), also after a round trip through the file, and
// folded standardisation makes it take raw features and give raw targets.
#include "train/mlaas_export.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "nn/dataset.h"
#include "nn/native_device.h"

namespace malv::train {
namespace {

struct Trained {
  std::unique_ptr<nn::NativeDevice> device;
  std::unique_ptr<nn::Mlp> model;
  std::vector<float> x;  // inputs the model has not seen
};

// A model trained a few steps on random data, so no parameter is at its
// initial value (biases start at zero).
Trained train_a_little(std::string_view spec, nn::Loss loss) {
  Trained t;
  auto device = nn::NativeDevice::create_cpu({.memory_bytes = 64ull << 20, .workers = 1});
  EXPECT_TRUE(device.ok());
  t.device = std::move(device).value();
  auto parsed = nn::MlpSpec::parse(spec);
  EXPECT_TRUE(parsed.ok());
  auto model = nn::Mlp::create(
      *t.device, *parsed, {.max_batch = 16, .seed = 5, .optimizer = {.lr = 1e-2f}, .loss = loss});
  EXPECT_TRUE(model.ok()) << model.error().to_string();
  t.model = std::move(model).value();
  const auto inputs = static_cast<std::size_t>(parsed->inputs());
  const auto outputs = static_cast<std::size_t>(parsed->classes());
  nn::Rng rng(11);
  for (int step = 0; step < 20; ++step) {
    std::vector<float> x(16 * inputs);
    for (float& v : x) v = rng.uniform(-2.0f, 2.0f);
    if (loss == nn::Loss::kMeanSquaredError) {
      std::vector<float> y(16 * outputs);
      for (float& v : y) v = rng.uniform(-1.0f, 1.0f);
      EXPECT_TRUE(t.model->train_step(x, std::span<const float>(y)).ok());
    } else {
      std::vector<std::int32_t> labels(16);
      for (auto& l : labels) l = static_cast<std::int32_t>(rng.next() % outputs);
      EXPECT_TRUE(t.model->train_step(x, std::span<const std::int32_t>(labels)).ok());
    }
  }
  t.x.resize(37 * inputs);  // more than one of the nn model's batches
  for (float& v : t.x) v = rng.uniform(-3.0f, 3.0f);
  return t;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rel * std::max(1.0, std::fabs(static_cast<double>(want[i]))))
        << "value " << i;
  }
}

TEST(MlaasExport, ARegressionModelGivesTheNnModelsOutputsValueByValue) {
  Trained t = train_a_little("mlp:3-8-8-2", nn::Loss::kMeanSquaredError);
  auto exported = export_mlaas_model(*t.model);
  ASSERT_TRUE(exported.ok()) << exported.error().to_string();
  ASSERT_EQ(exported->layers().size(), 3u);
  EXPECT_EQ(exported->shape_key(), "3-8relu-8relu-2identity");
  EXPECT_EQ(exported->layers()[0].in, 3u);
  EXPECT_EQ(exported->layers()[0].out, 8u);

  auto want = t.model->outputs(t.x);
  ASSERT_TRUE(want.ok());
  std::vector<float> got(want->size());
  exported->infer_cpu(t.x.data(), t.x.size() / 3, got.data());
  expect_close(got, *want, 1e-5);

  // The same after the file: what a policy module loads.
  const auto path = std::filesystem::temp_directory_path() /
                    ("malv-export-" + std::to_string(::getpid()) + ".safetensors");
  ASSERT_TRUE(exported->save(path.string()).ok());
  auto loaded = mlaas::Mlp::load(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  std::vector<float> from_file(want->size());
  loaded->infer_cpu(t.x.data(), t.x.size() / 3, from_file.data());
  EXPECT_EQ(from_file, got);
}

TEST(MlaasExport, AClassifierGivesTheSoftmaxOfTheNnModelsLogits) {
  Trained t = train_a_little("mlp:4-16-3", nn::Loss::kSoftmaxXent);
  auto exported = export_mlaas_model(*t.model);
  ASSERT_TRUE(exported.ok()) << exported.error().to_string();
  EXPECT_EQ(exported->shape_key(), "4-16relu-3softmax");
  auto logits = t.model->outputs(t.x);
  ASSERT_TRUE(logits.ok());
  std::vector<float> want = *logits;
  mlaas::apply_activation(mlaas::Activation::kSoftmax, want.data(), want.size() / 3, 3);
  std::vector<float> got(want.size());
  exported->infer_cpu(t.x.data(), t.x.size() / 4, got.data());
  expect_close(got, want, 1e-5);
  // And the classes nn predicts are the most likely ones.
  auto classes = t.model->predict(t.x);
  ASSERT_TRUE(classes.ok());
  for (std::size_t r = 0; r < classes->size(); ++r) {
    const float* row = got.data() + r * 3;
    EXPECT_EQ(std::max_element(row, row + 3) - row, (*classes)[r]) << "row " << r;
  }
}

TEST(MlaasExport, FoldedStandardisationTakesRawFeaturesAndGivesRawTargets) {
  Trained t = train_a_little("mlp:3-8-2", nn::Loss::kMeanSquaredError);
  Standardisation inputs{{100.0, -5.0, 0.5}, {20.0, 0.1, 3.0}};
  Standardisation targets{{1000.0, -2.0}, {50.0, 0.25}};
  auto exported = export_mlaas_model(*t.model, {.inputs = &inputs, .targets = &targets});
  ASSERT_TRUE(exported.ok()) << exported.error().to_string();

  // Raw features: scaled back from the test inputs the nn model sees.
  std::vector<float> raw = t.x;
  inputs.restore(raw);
  auto scaled_out = t.model->outputs(t.x);
  ASSERT_TRUE(scaled_out.ok());
  std::vector<float> want = *scaled_out;
  targets.restore(want);
  std::vector<float> got(want.size());
  exported->infer_cpu(raw.data(), raw.size() / 3, got.data());
  expect_close(got, want, 1e-4);
}

TEST(MlaasExport, ScalingsThatDoNotFitTheModelAreRefused) {
  Trained t = train_a_little("mlp:3-4-2", nn::Loss::kMeanSquaredError);
  Standardisation two{{0.0, 0.0}, {1.0, 1.0}};
  Standardisation three{{0.0, 0.0, 0.0}, {1.0, 1.0, 1.0}};
  EXPECT_FALSE(export_mlaas_model(*t.model, {.inputs = &two}).ok());
  EXPECT_FALSE(export_mlaas_model(*t.model, {.targets = &three}).ok());
  Trained c = train_a_little("mlp:3-4-2", nn::Loss::kSoftmaxXent);
  auto refused = export_mlaas_model(*c.model, {.targets = &two});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("classifier"), std::string::npos);
}

}  // namespace
}  // namespace malv::train
