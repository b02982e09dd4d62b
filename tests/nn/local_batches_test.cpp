// LocalBatches: step s uploads the rows of epoch s / steps_per_epoch's
// permutation, unchanged; with an Augmenter the same examples in the same
// order, each augmented as augment_seed(run seed, s, example) draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "data/augment.h"
#include "nn/batch_source.h"
#include "nn/dataset.h"
#include "nn/mlp.h"
#include "nn/native_device.h"

namespace malv::nn {
namespace {

constexpr std::size_t kDims = 28 * 28;
constexpr std::uint32_t kCount = 10;
constexpr std::uint32_t kBatch = 4;  // 3 steps per epoch, the last of 2 examples
constexpr std::uint64_t kSeed = 3;

class LocalBatchesTest : public testing::Test {
 protected:
  void SetUp() override {
    auto device = NativeDevice::create_cpu({.memory_bytes = 64ull << 20, .workers = 1});
    ASSERT_TRUE(device.ok()) << device.error().to_string();
    device_ = std::move(device).value();
    auto model = Mlp::create(*device_, MlpSpec::parse("mlp:784-8-10").value(),
                             {.max_batch = kBatch, .seed = kSeed});
    ASSERT_TRUE(model.ok()) << model.error().to_string();
    model_ = std::move(model).value();
    std::vector<std::uint8_t> pixels(kCount * kDims);
    std::vector<std::uint8_t> labels(kCount);
    for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 7);
    for (std::uint32_t i = 0; i < kCount; ++i) labels[i] = static_cast<std::uint8_t>(i);
    train_ = make_dataset(pixels, labels, kDims, 10).value();
  }

  // What load() put in the model's input and label buffers: `rows` rows.
  std::pair<std::vector<float>, std::vector<std::int32_t>> uploaded(std::uint32_t rows) {
    std::vector<float> x(rows * kDims);
    std::vector<std::int32_t> labels(rows);
    EXPECT_TRUE(
        device_->read(model_->input_buffer(), 0, std::as_writable_bytes(std::span(x))).ok());
    EXPECT_TRUE(
        device_->read(model_->labels_buffer(), 0, std::as_writable_bytes(std::span(labels))).ok());
    EXPECT_TRUE(device_->synchronize().ok());
    return {x, labels};
  }

  // The examples of step `step`, in order.
  std::vector<std::uint32_t> examples_of(std::uint64_t step) const {
    const std::uint64_t steps_per_epoch = (kCount + kBatch - 1) / kBatch;
    const std::vector<std::uint32_t> order =
        shuffled_indices(kCount, kSeed, step / steps_per_epoch);
    const std::size_t first = (step % steps_per_epoch) * kBatch;
    const std::size_t last = std::min<std::size_t>(first + kBatch, kCount);
    return {order.begin() + static_cast<std::ptrdiff_t>(first),
            order.begin() + static_cast<std::ptrdiff_t>(last)};
  }

  std::vector<float> row_of(std::uint32_t example) const {
    return {train_.features.begin() + static_cast<std::ptrdiff_t>(example * kDims),
            train_.features.begin() + static_cast<std::ptrdiff_t>((example + 1) * kDims)};
  }

  static data::Augmenter augmenter() { return data::Augmenter::create({}, kDims).value(); }

  std::unique_ptr<NativeDevice> device_;
  std::unique_ptr<Mlp> model_;
  Dataset train_;
};

TEST_F(LocalBatchesTest, WithoutAugmentationEachStepUploadsItsExamplesRowsUnchanged) {
  LocalBatches batches(train_, kBatch, kSeed);
  for (std::uint64_t step = 0; step < 7; ++step) {  // over two epoch boundaries
    auto rows = batches.load(*model_, step);
    ASSERT_TRUE(rows.ok()) << rows.error().to_string();
    const std::vector<std::uint32_t> examples = examples_of(step);
    ASSERT_EQ(*rows, examples.size());
    auto [x, labels] = uploaded(*rows);
    for (std::size_t r = 0; r < examples.size(); ++r) {
      const std::vector<float> expected = row_of(examples[r]);
      EXPECT_EQ(std::memcmp(x.data() + r * kDims, expected.data(), kDims * sizeof(float)), 0)
          << "step " << step << " row " << r;
      EXPECT_EQ(labels[r], train_.labels[examples[r]]);
    }
  }
}

TEST_F(LocalBatchesTest, AugmentedStepsHoldTheSameExamplesEachAugmentedByItsSeed) {
  LocalBatches batches(train_, kBatch, kSeed, /*wait_for_upload=*/false, augmenter());
  data::Augmenter reference = augmenter();
  for (std::uint64_t step = 0; step < 7; ++step) {
    auto rows = batches.load(*model_, step);
    ASSERT_TRUE(rows.ok()) << rows.error().to_string();
    const std::vector<std::uint32_t> examples = examples_of(step);
    ASSERT_EQ(*rows, examples.size());
    auto [x, labels] = uploaded(*rows);
    for (std::size_t r = 0; r < examples.size(); ++r) {
      std::vector<float> expected = row_of(examples[r]);
      const std::vector<float> plain = expected;
      reference.apply(expected, data::augment_seed(kSeed, step, examples[r]));
      EXPECT_EQ(std::memcmp(x.data() + r * kDims, expected.data(), kDims * sizeof(float)), 0)
          << "step " << step << " row " << r;
      EXPECT_NE(std::memcmp(x.data() + r * kDims, plain.data(), kDims * sizeof(float)), 0)
          << "step " << step << " row " << r << " was not augmented";
      EXPECT_EQ(labels[r], train_.labels[examples[r]]);
    }
  }
}

TEST_F(LocalBatchesTest, AnAugmentedStepIsBitIdenticalWhicheverStepsCameBefore) {
  LocalBatches first(train_, kBatch, kSeed, false, augmenter());
  LocalBatches second(train_, kBatch, kSeed, false, augmenter());
  ASSERT_EQ(first.load(*model_, 4).value(), kBatch);
  const std::vector<float> x4 = uploaded(kBatch).first;
  // The second source comes to step 4 after step 1, as a run resumed there
  // after another run's step 1 would.
  ASSERT_EQ(second.load(*model_, 1).value(), kBatch);
  const std::vector<float> x1 = uploaded(kBatch).first;
  ASSERT_EQ(second.load(*model_, 4).value(), kBatch);
  const std::vector<float> again = uploaded(kBatch).first;
  EXPECT_EQ(std::memcmp(x4.data(), again.data(), x4.size() * sizeof(float)), 0);
  EXPECT_NE(x1, x4);
}

}  // namespace
}  // namespace malv::nn
