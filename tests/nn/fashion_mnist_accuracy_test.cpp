// The acceptance figure: a 784-256-128-10 MLP with Adam reaches at least
// 85 % test accuracy on Fashion-MNIST within 5 epochs (native device).
#include <gtest/gtest.h>

#include <filesystem>

#include "base/clock.h"
#include "nn/native_device.h"
#include "nn/trainer.h"

namespace malv::nn {
namespace {

TEST(FashionMnist, MlpReaches85PercentTestAccuracyWithin5Epochs) {
  if (!std::filesystem::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  auto train = load_fashion_mnist(kFashionMnistDir, Split::kTrain);
  auto test = load_fashion_mnist(kFashionMnistDir, Split::kTest);
  ASSERT_TRUE(train.ok()) << train.error().to_string();
  ASSERT_TRUE(test.ok()) << test.error().to_string();
  auto device = NativeDevice::create_cpu({});
  ASSERT_TRUE(device.ok());
  TrainOptions options;  // mlp:784-256-128-10, Adam 1e-3, batch 128, 5 epochs
  auto trainer = Trainer::create(**device, *train, options);
  ASSERT_TRUE(trainer.ok()) << trainer.error().to_string();
  Stopwatch watch;
  double accuracy = 0.0;
  Status s = (*trainer)->run([&](const Progress& p) {
    if (!p.epoch_end) return;
    auto acc = (*trainer)->model().evaluate(*test);
    accuracy = acc.ok() ? *acc : 0.0;
    std::printf("epoch %llu step %llu loss %.4f test accuracy %.4f (%.1f s)\n",
                static_cast<unsigned long long>(p.epoch), static_cast<unsigned long long>(p.step),
                p.loss, accuracy, watch.elapsed_s());
  });
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_GE(accuracy, 0.85);
}

}  // namespace
}  // namespace malv::nn
