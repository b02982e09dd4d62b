// nn::Mlp with the mean-squared-error loss: the loss and its gradient are
// what the formula says, a small model learns a linear function, and the
// classification-only calls are refused on a regression model.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/dataset.h"
#include "nn/mlp.h"
#include "nn/native_device.h"

namespace malv::nn {
namespace {

std::unique_ptr<NativeDevice> make_device() {
  auto device = NativeDevice::create_cpu({.memory_bytes = 64ull << 20, .workers = 1});
  EXPECT_TRUE(device.ok()) << device.error().to_string();
  return std::move(device).value();
}

std::unique_ptr<Mlp> make_model(Device& device, std::string_view spec, MlpOptions options) {
  auto parsed = MlpSpec::parse(spec);
  EXPECT_TRUE(parsed.ok());
  auto model = Mlp::create(device, *parsed, options);
  EXPECT_TRUE(model.ok()) << model.error().to_string();
  return std::move(model).value();
}

const NamedArray& array(const Checkpoint& checkpoint, std::string_view name) {
  for (const NamedArray& a : checkpoint.arrays) {
    if (a.name == name) return a;
  }
  ADD_FAILURE() << "no array " << name;
  static const NamedArray kNone;
  return kNone;
}

TEST(MlpRegression, LossAndGradientOfAKnownBatchAreTheMeanSquaredErrorsAndItsDerivative) {
  auto device = make_device();
  // One identity layer, plain SGD at lr 1: the update is minus the gradient.
  auto model = make_model(*device, "mlp:2-1",
                          {.max_batch = 4,
                           .optimizer = {.kind = OptimizerKind::kSgd, .lr = 1.0f},
                           .loss = Loss::kMeanSquaredError});
  Checkpoint start;
  start.set("model", "mlp:2-1");
  start.set("loss", "mse");
  start.arrays = {{"dense0.weight", {0.5f, -1.0f}}, {"dense0.bias", {0.25f}}};
  ASSERT_TRUE(model->load_parameters(encode_checkpoint(start)).ok());

  const std::vector<float> x{1, 2, 3, -1, 0, 1};
  const std::vector<float> y{1, 0, 2};
  // Predictions -1.25, 2.75, -0.75; errors -2.25, 2.75, -2.75.
  auto before = model->outputs(x);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(*before, (std::vector<float>{-1.25f, 2.75f, -0.75f}));
  ASSERT_TRUE(model->train_step(x, y).ok());
  auto loss = model->last_loss();
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(*loss, (2.25 * 2.25 + 2.75 * 2.75 + 2.75 * 2.75) / 3.0, 1e-5);

  // dL/dpred = 2/3 * error; dW = x^T dpred = (4, -20/3); db = -1.5.
  auto after = model->parameters_checkpoint();
  ASSERT_TRUE(after.ok());
  const std::vector<float>& w = array(*after, "dense0.weight").values;
  const std::vector<float>& b = array(*after, "dense0.bias").values;
  ASSERT_EQ(w.size(), 2u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_NEAR(w[0], 0.5 - 4.0, 1e-5);
  EXPECT_NEAR(w[1], -1.0 + 20.0 / 3.0, 1e-5);
  EXPECT_NEAR(b[0], 0.25 + 1.5, 1e-5);
}

TEST(MlpRegression, SeveralOutputsAverageTheLossOverEveryElement) {
  auto device = make_device();
  auto model = make_model(*device, "mlp:1-2",
                          {.max_batch = 2,
                           .optimizer = {.kind = OptimizerKind::kSgd, .lr = 1e-3f},
                           .loss = Loss::kMeanSquaredError});
  Checkpoint start;
  start.set("model", "mlp:1-2");
  start.set("loss", "mse");
  start.arrays = {{"dense0.weight", {1.0f, 2.0f}}, {"dense0.bias", {0.0f, 0.0f}}};
  ASSERT_TRUE(model->load_parameters(encode_checkpoint(start)).ok());
  // Outputs (1, 2) and (2, 4) against (0, 0) and (2, 2): errors 1, 2, 0, 2.
  ASSERT_TRUE(model->train_step(std::vector<float>{1, 2}, std::vector<float>{0, 0, 2, 2}).ok());
  auto loss = model->last_loss();
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(*loss, (1.0 + 4.0 + 0.0 + 4.0) / 4.0, 1e-6);
}

TEST(MlpRegression, ASmallModelLearnsALinearFunction) {
  auto device = make_device();
  auto model = make_model(*device, "mlp:2-16-1",
                          {.max_batch = 32,
                           .seed = 3,
                           .optimizer = {.kind = OptimizerKind::kAdam, .lr = 1e-2f},
                           .loss = Loss::kMeanSquaredError});
  Rng rng(7);
  const std::size_t n = 1024;
  std::vector<float> x(n * 2);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[2 * i] = rng.uniform(-1.0f, 1.0f);
    x[2 * i + 1] = rng.uniform(-1.0f, 1.0f);
    y[i] = 3.0f * x[2 * i] - 2.0f * x[2 * i + 1] + 1.0f;
  }
  for (int epoch = 0; epoch < 30; ++epoch) {
    for (std::size_t first = 0; first < n; first += 32) {
      ASSERT_TRUE(model
                      ->train_step(std::span(x).subspan(first * 2, 64),
                                   std::span<const float>(y).subspan(first, 32))
                      .ok());
    }
  }
  auto predicted = model->outputs(x);
  ASSERT_TRUE(predicted.ok()) << predicted.error().to_string();
  double mse = 0;
  for (std::size_t i = 0; i < n; ++i) mse += std::pow((*predicted)[i] - y[i], 2.0);
  mse /= static_cast<double>(n);
  EXPECT_LT(mse, 1e-2);  // the target's variance is about 4.3
}

TEST(MlpRegression, ClassificationCallsOnARegressionModelAreRefused) {
  auto device = make_device();
  auto model = make_model(*device, "mlp:2-3", {.max_batch = 4, .loss = Loss::kMeanSquaredError});
  const std::vector<float> x{1, 2};
  const std::vector<std::int32_t> labels{0};
  Status step = model->train_step(x, labels);
  ASSERT_FALSE(step.ok());
  EXPECT_EQ(step.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(step.error().message().find("xent"), std::string::npos);
  EXPECT_FALSE(model->predict(x).ok());
  // Targets that are not whole rows of three.
  EXPECT_FALSE(model->train_step(x, std::vector<float>{1, 2}).ok());
}

TEST(MlpRegression, FloatTargetsForAClassifierAreRefused) {
  auto device = make_device();
  auto model = make_model(*device, "mlp:2-3", {.max_batch = 4});
  Status step = model->train_step(std::vector<float>{1, 2}, std::vector<float>{0, 0, 1});
  ASSERT_FALSE(step.ok());
  EXPECT_NE(step.error().message().find("mse"), std::string::npos);
}

TEST(MlpRegression, ParametersOfAClassifierDoNotLoadIntoARegressionModel) {
  auto device = make_device();
  auto classifier = make_model(*device, "mlp:2-3", {.max_batch = 4});
  auto regression =
      make_model(*device, "mlp:2-3", {.max_batch = 4, .loss = Loss::kMeanSquaredError});
  auto bytes = classifier->save_parameters();
  ASSERT_TRUE(bytes.ok());
  Status loaded = regression->load_parameters(*bytes);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message().find("loss xent"), std::string::npos);
  auto own = regression->save_parameters();
  ASSERT_TRUE(own.ok());
  EXPECT_TRUE(regression->load_parameters(*own).ok());
}

TEST(MlpRegression, LossNamesParseBothWays) {
  EXPECT_EQ(*parse_loss("mse"), Loss::kMeanSquaredError);
  EXPECT_EQ(*parse_loss("xent"), Loss::kSoftmaxXent);
  EXPECT_EQ(loss_name(Loss::kMeanSquaredError), "mse");
  EXPECT_FALSE(parse_loss("l1").ok());
}

}  // namespace
}  // namespace malv::nn
