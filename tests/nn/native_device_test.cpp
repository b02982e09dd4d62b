// NativeDevice and the model code on it: kernels compute what they should,
// bad launches are refused, and a small MLP learns.
#include "nn/native_device.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "nn/dataset.h"
#include "nn/mlp.h"
#include "nn/trainer.h"

namespace malv::nn {
namespace {

std::unique_ptr<NativeDevice> make_device() {
  auto device = NativeDevice::create_cpu({.memory_bytes = 256ull << 20, .workers = 2});
  EXPECT_TRUE(device.ok()) << device.error().to_string();
  return std::move(device).value();
}

TEST(NativeDevice, GemmMatchesAReferenceProduct) {
  auto device = make_device();
  const std::vector<float> a{1, 2, 3, 4, 5, 6};  // 2 x 3
  const std::vector<float> b{1, 0, 0, 1, 1, 1};  // 3 x 2
  auto ta = Tensor::create(*device, 2, 3);
  auto tb = Tensor::create(*device, 3, 2);
  auto tc = Tensor::create(*device, 2, 2);
  ASSERT_TRUE(ta.ok() && tb.ok() && tc.ok());
  ASSERT_TRUE(device->write(ta->buffer, 0, std::as_bytes(std::span(a))).ok());
  ASSERT_TRUE(device->write(tb->buffer, 0, std::as_bytes(std::span(b))).ok());
  ASSERT_TRUE(device
                  ->launch(BuiltinKernel::kGemm,
                           {ta->arg(), tb->arg(), tc->arg(), Arg::i64(2), Arg::i64(2), Arg::i64(3),
                            Arg::i64(0), Arg::i64(0), Arg::f32(1.0f), Arg::f32(0.0f)})
                  .ok());
  std::vector<float> c(4);
  ASSERT_TRUE(device->read(tc->buffer, 0, std::as_writable_bytes(std::span(c))).ok());
  ASSERT_TRUE(device->synchronize().ok());
  EXPECT_EQ(c, (std::vector<float>{4, 5, 10, 11}));
}

TEST(NativeDevice, LaunchPastTheEndOfABufferIsRefusedBeforeItRuns) {
  auto device = make_device();
  auto t = Tensor::create(*device, 1, 4);
  ASSERT_TRUE(t.ok());
  Status s = device->launch(BuiltinKernel::kFill, {t->arg(), Arg::i64(5), Arg::f32(1.0f)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kOutOfRange);
  Status kinds = device->launch(BuiltinKernel::kFill, {t->arg(), Arg::f32(1.0f), Arg::f32(1.0f)});
  EXPECT_FALSE(kinds.ok());
  EXPECT_TRUE(device->synchronize().ok());
}

TEST(NativeDevice, AKernelFaultIsReportedAtSynchronizeNamingTheKernel) {
  auto device = make_device();
  auto logits = Tensor::create(*device, 1, 3);
  auto probs = Tensor::create(*device, 1, 3);
  auto labels = Tensor::create(*device, 1, 1);
  auto loss = Tensor::create(*device, 1, 1);
  ASSERT_TRUE(logits.ok() && probs.ok() && labels.ok() && loss.ok());
  const std::int32_t bad_label = 7;
  ASSERT_TRUE(device->write(labels->buffer, 0, std::as_bytes(std::span(&bad_label, 1))).ok());
  ASSERT_TRUE(device
                  ->launch(BuiltinKernel::kSoftmaxXent, {logits->arg(), labels->arg(), probs->arg(),
                                                         loss->arg(), Arg::i64(1), Arg::i64(3)})
                  .ok());
  Status s = device->synchronize();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().to_string().find("softmax_xent"), std::string::npos);
  EXPECT_TRUE(device->synchronize().ok());  // reported once
}

TEST(NativeDevice, ABufferOfAnotherDeviceIsRefused) {
  auto a = make_device();
  auto b = make_device();
  auto t = Tensor::create(*a, 1, 4);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(b->launch(BuiltinKernel::kFill, {t->arg(), Arg::i64(4), Arg::f32(0.0f)}).ok());
  std::vector<float> out(4);
  EXPECT_FALSE(b->read(t->buffer, 0, std::as_writable_bytes(std::span(out))).ok());
}

// A synthetic, learnable problem: the class is the index of the largest of
// the first `classes` features.
Dataset synthetic(std::size_t count, std::size_t dims, int classes, std::uint64_t seed) {
  Dataset d;
  d.count = count;
  d.dims = dims;
  d.classes = classes;
  Rng rng(seed);
  d.features.resize(count * dims);
  d.labels.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    float best = -1.0f;
    for (std::size_t j = 0; j < dims; ++j) {
      const float v = rng.unit();
      d.features[i * dims + j] = v;
      if (j < static_cast<std::size_t>(classes) && v > best) {
        best = v;
        d.labels[i] = static_cast<std::int32_t>(j);
      }
    }
  }
  return d;
}

TEST(Mlp, LossDecreasesOnASmallProblemWithAdamAndSgd) {
  for (OptimizerKind kind : {OptimizerKind::kAdam, OptimizerKind::kSgd}) {
    auto device = make_device();
    const Dataset data = synthetic(2048, 16, 4, 7);
    TrainOptions options;
    options.model = "mlp:16-32-4";
    options.optimizer = {.kind = kind, .lr = kind == OptimizerKind::kAdam ? 3e-3f : 0.2f};
    options.batch = 64;
    options.epochs = 10;
    auto trainer = Trainer::create(*device, data, options);
    ASSERT_TRUE(trainer.ok()) << trainer.error().to_string();
    std::vector<float> losses;
    Status s = (*trainer)->run([&](const Progress& p) { losses.push_back(p.loss); });
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    ASSERT_EQ((*trainer)->step_count(), 320u);
    ASSERT_GE(losses.size(), 10u);
    EXPECT_LT(losses.back(), 0.6f * losses.front()) << optimizer_name(kind);
    auto accuracy = (*trainer)->model().evaluate(data);
    ASSERT_TRUE(accuracy.ok());
    EXPECT_GT(*accuracy, 0.8) << optimizer_name(kind);
  }
}

TEST(Mlp, ParametersSaveAndLoadByteForByte) {
  auto device = make_device();
  auto spec = MlpSpec::parse("mlp:8-5-3");
  ASSERT_TRUE(spec.ok());
  auto a = Mlp::create(*device, *spec, {.max_batch = 4, .seed = 1});
  auto b = Mlp::create(*device, *spec, {.max_batch = 4, .seed = 2});
  ASSERT_TRUE(a.ok() && b.ok());
  auto saved_a = (*a)->save_parameters();
  auto saved_b = (*b)->save_parameters();
  ASSERT_TRUE(saved_a.ok() && saved_b.ok());
  EXPECT_NE(*saved_a, *saved_b);  // different seeds, different weights
  ASSERT_TRUE((*b)->load_parameters(*saved_a).ok());
  auto reloaded = (*b)->save_parameters();
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(*reloaded, *saved_a);

  auto other = MlpSpec::parse("mlp:8-6-3");
  auto c = Mlp::create(*device, *other, {.max_batch = 4});
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE((*c)->load_parameters(*saved_a).ok());
}

TEST(Mlp, MalformedBatchesAreRefused) {
  auto device = make_device();
  auto spec = MlpSpec::parse("mlp:4-3");
  auto model = Mlp::create(*device, *spec, {.max_batch = 2});
  ASSERT_TRUE(model.ok());
  const std::vector<float> x(12, 0.0f);
  const std::vector<std::int32_t> three{0, 1, 2};
  EXPECT_FALSE((*model)->train_step(x, three).ok());  // more rows than max_batch
  const std::vector<std::int32_t> two{0, 1};
  EXPECT_FALSE((*model)->train_step(std::span(x).first(7), two).ok());
}

}  // namespace
}  // namespace malv::nn
