// The host's data pipeline: which files it may read, what it decodes, and
// that it stages exactly nn::Trainer's batches, under the prefetch policy's
// depth, on device memory it gives back.
#include "offload/data_pipeline.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>

#include "accel/backend.h"
#include "data/rng.h"
#include "offload/dataset_catalog.h"

namespace malv::offload {
namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t kDims = 6;
constexpr std::uint32_t kCount = 50;

class DataPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / fmt::format("malv-pipeline-{}-{}", ::getpid(), counter_++);
    fs::create_directories(root_ / "data" / "set");
    // Example i has every feature byte = i and label i % 7.
    std::vector<std::uint8_t> pixels(kCount * kDims);
    std::vector<std::uint8_t> labels(kCount);
    for (std::uint32_t i = 0; i < kCount; ++i) {
      std::fill_n(pixels.begin() + i * kDims, kDims, static_cast<std::uint8_t>(i));
      labels[i] = static_cast<std::uint8_t>(i % 7);
    }
    write(root_ / "data" / "set" / "x.u8", pixels);
    write(root_ / "data" / "set" / "y.u8", labels);
    write(root_ / "secret.u8", labels);
    backend_ = accel::make_cpu_backend({.memory_bytes = 64ull << 20, .workers = 2});
  }
  void TearDown() override {
    backend_.reset();
    fs::remove_all(root_);
  }

  static void write(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }

  DatasetCatalog catalog(PrefetchPolicy policy = {}) {
    return DatasetCatalog(
        {.data_dirs = {(root_ / "data").string()}, .max_depth = 4, .prefetch = std::move(policy)});
  }

  static DatasetSource raw_source() {
    DatasetSource s;
    s.format = DatasetFormat::kRawU8;
    s.features = "set/x.u8";
    s.labels = "set/y.u8";
    s.dims = kDims;
    s.classes = 7;
    return s;
  }

  // The batch's rows as example ids (feature byte = id, scaled to [0, 1]).
  std::vector<std::uint32_t> read_batch(const DataPipeline::Batch& b,
                                        std::vector<std::int32_t>* labels = nullptr) {
    auto queue = backend_->create_queue(accel::QueuePriority::kNormal).value();
    backend_->enqueue(queue, accel::WaitEvent{b.ready}, {});
    std::vector<float> x(b.rows * kDims);
    std::vector<std::int32_t> y(b.rows);
    backend_->enqueue(queue, accel::CopyD2H{b.features, x.data(), x.size() * sizeof(float)}, {});
    backend_->enqueue(queue, accel::CopyD2H{b.labels, y.data(), y.size() * sizeof(std::int32_t)},
                      {});
    backend_->destroy_queue(queue);
    std::vector<std::uint32_t> ids;
    for (std::uint32_t r = 0; r < b.rows; ++r) {
      ids.push_back(static_cast<std::uint32_t>(x[r * kDims] * 255.0f + 0.5f));
      for (std::uint32_t d = 1; d < kDims; ++d) EXPECT_EQ(x[r * kDims + d], x[r * kDims]);
    }
    if (labels) *labels = y;
    return ids;
  }

  static inline std::atomic<int> counter_{0};
  fs::path root_;
  std::unique_ptr<accel::Backend> backend_;
};

TEST_F(DataPipelineTest, CatalogReadsOnlyInsideItsDataDirectories) {
  DatasetCatalog c = catalog();
  EXPECT_TRUE(c.resolve("set/x.u8").ok());
  EXPECT_EQ(c.resolve("../secret.u8").error().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(c.resolve("set/../../secret.u8").error().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(c.resolve((root_ / "secret.u8").string()).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(c.resolve("set/missing.u8").error().code(), ErrorCode::kNotFound);
  fs::create_symlink(root_ / "secret.u8", root_ / "data" / "escape.u8");
  EXPECT_EQ(c.resolve("escape.u8").error().code(), ErrorCode::kPermissionDenied);
}

TEST_F(DataPipelineTest, CatalogRefusesBadFilesWithTheirNames) {
  DatasetCatalog c = catalog();
  DatasetSource s = raw_source();
  s.dims = kDims + 1;  // the feature file no longer matches the label count
  auto mismatched = c.load(s);
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.error().message().find("x.u8"), std::string::npos)
      << mismatched.error().to_string();
  s = raw_source();
  s.classes = 3;  // labels go up to 6
  EXPECT_FALSE(c.load(s).ok());
  // An IDX directory whose files are not IDX.
  fs::create_directories(root_ / "data" / "fake-mnist");
  write(root_ / "data" / "fake-mnist" / "train-images-idx3-ubyte.gz", {1, 2, 3, 4, 5, 6, 7, 8});
  write(root_ / "data" / "fake-mnist" / "train-labels-idx1-ubyte.gz", {1, 2, 3, 4, 5, 6, 7, 8});
  DatasetSource idx;
  idx.format = DatasetFormat::kFashionMnistTrain;
  idx.features = "fake-mnist";
  auto bad = c.load(idx);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("magic"), std::string::npos) << bad.error().to_string();
}

TEST_F(DataPipelineTest, TheSameDatasetIsDecodedOnceAndShared) {
  DatasetCatalog c = catalog();
  auto a = c.load(raw_source()).value();
  auto b = c.load(raw_source()).value();
  EXPECT_EQ(a.get(), b.get());
}

TEST_F(DataPipelineTest, StagesTheTrainersBatchesInOrder) {
  DatasetCatalog c = catalog();
  auto data = c.load(raw_source()).value();
  const std::uint32_t batch = 16;  // 50 examples: 16, 16, 16, 2 per epoch
  auto pipeline =
      DataPipeline::start(*backend_, data, {.vm = "vm", .batch = batch, .seed = 9, .max_depth = 3})
          .value();
  ASSERT_EQ(pipeline->steps_per_epoch(), 4u);
  for (std::uint64_t step = 0; step < 9; ++step) {
    auto b = pipeline->next();
    ASSERT_TRUE(b.ok()) << b.error().to_string();
    EXPECT_EQ(b->index, step);
    std::vector<std::int32_t> labels;
    const std::vector<std::uint32_t> ids = read_batch(*b, &labels);
    const auto order = data::shuffled_indices(kCount, 9, step / 4);
    const std::size_t first = (step % 4) * batch;
    const std::size_t rows = std::min<std::size_t>(batch, kCount - first);
    ASSERT_EQ(ids.size(), rows) << "step " << step;
    for (std::size_t r = 0; r < rows; ++r) {
      EXPECT_EQ(ids[r], order[first + r]) << "step " << step << " row " << r;
      EXPECT_EQ(labels[r], static_cast<std::int32_t>(order[first + r] % 7));
    }
    pipeline->release(b->slot);
  }
}

TEST_F(DataPipelineTest, StartsAtTheRequestedBatch) {
  DatasetCatalog c = catalog();
  auto data = c.load(raw_source()).value();
  auto pipeline =
      DataPipeline::start(*backend_, data, {.batch = 16, .seed = 3, .first_batch = 6}).value();
  auto b = pipeline->next().value();
  EXPECT_EQ(b.index, 6u);
  const auto order = data::shuffled_indices(kCount, 3, 1);
  EXPECT_EQ(read_batch(b).front(), order[2 * 16]);
}

TEST_F(DataPipelineTest, DepthFollowsThePrefetchPolicy) {
  std::atomic<int> asked{0};
  DatasetCatalog c = catalog([&](std::string_view vm, const malv_prefetch_observation& o) {
    EXPECT_EQ(vm, "vm-p");
    EXPECT_EQ(o.max_depth, 4u);
    EXPECT_GE(o.consumption_per_s, 0.0);
    ++asked;
    return 99u;  // beyond the cap: clamped to max_depth
  });
  auto data = c.load(raw_source()).value();
  auto pipeline = DataPipeline::start(
                      *backend_, data,
                      {.vm = "vm-p", .batch = 4, .max_depth = 4, .prefetch = c.prefetch_policy()})
                      .value();
  EXPECT_EQ(pipeline->stats().depth, 2u);
  for (int i = 0; i < 2 * static_cast<int>(DataPipeline::kDecisionEvery); ++i) {
    auto b = pipeline->next().value();
    // As the session does: release a slot only once copies from it ran,
    // which waited for its upload (the producer then reuses its staging).
    EXPECT_EQ(read_batch(b).size(), b.rows);
    pipeline->release(b.slot);
  }
  EXPECT_EQ(asked.load(), 2);
  EXPECT_EQ(pipeline->stats().depth, 4u);
  EXPECT_EQ(pipeline->stats().policy_decisions, 2u);
}

// Before each decision but the first, the policy hears what the previous one
// gave: that decision's observation, the depth that applied since, and the
// consumer's stall meanwhile (the new observation's).
TEST_F(DataPipelineTest, EachDecisionButTheFirstIsPrecededByTheOutcomeOfTheOneBefore) {
  std::vector<malv_prefetch_observation> asked;
  std::vector<malv_prefetch_outcome> told;
  std::mutex mutex;
  DatasetCatalog c = catalog([&](std::string_view, const malv_prefetch_observation& o) {
    std::lock_guard lock(mutex);
    asked.push_back(o);
    return 3u;
  });
  auto data = c.load(raw_source()).value();
  PipelineOptions options{.vm = "vm-f", .batch = 4, .max_depth = 4};
  options.prefetch = c.prefetch_policy();
  options.feedback = [&](std::string_view vm, const malv_prefetch_outcome& outcome) {
    EXPECT_EQ(vm, "vm-f");
    std::lock_guard lock(mutex);
    told.push_back(outcome);
  };
  auto pipeline = DataPipeline::start(*backend_, data, options).value();
  for (int i = 0; i < 3 * static_cast<int>(DataPipeline::kDecisionEvery); ++i) {
    auto b = pipeline->next().value();
    EXPECT_EQ(read_batch(b).size(), b.rows);
    pipeline->release(b.slot);
  }
  std::lock_guard lock(mutex);
  ASSERT_EQ(asked.size(), 3u);
  ASSERT_EQ(told.size(), 2u);
  for (std::size_t i = 0; i < told.size(); ++i) {
    EXPECT_EQ(std::memcmp(&told[i].stream, &asked[i], sizeof(malv_prefetch_observation)), 0) << i;
    EXPECT_EQ(told[i].consumer_stall_ns, asked[i + 1].consumer_stall_ns) << i;
    EXPECT_EQ(told[i].depth_used, asked[i + 1].current_depth) << i;
  }
  EXPECT_EQ(told[0].depth_used, 3u);  // what the first decision set
}

// Every wait of next() for a batch is told to on_stall (the host sums it per
// VM: the feature data_stall_share, malv_vm_data_stall_seconds_total), and
// the waits told add up to the pipeline's own stall count.
TEST_F(DataPipelineTest, EveryStallOfTheConsumerIsToldWithItsLength) {
  DatasetCatalog c = catalog();
  auto data = c.load(raw_source()).value();
  std::atomic<std::int64_t> told_ns{0};
  std::atomic<int> stalls{0};
  PipelineOptions options{.vm = "vm-s", .batch = 4, .max_depth = 1, .initial_depth = 1};
  // A producer slower than the consumer: 5 ms a batch.
  options.producer_delay = [](std::string_view, std::uint64_t) -> std::int64_t {
    return 5'000'000;
  };
  options.on_stall = [&](std::int64_t waited_ns) {
    EXPECT_GT(waited_ns, 0);
    told_ns += waited_ns;
    ++stalls;
  };
  auto pipeline = DataPipeline::start(*backend_, data, options).value();
  for (int i = 0; i < 6; ++i) {
    auto b = pipeline->next().value();
    pipeline->release(b.slot);
  }
  EXPECT_GT(stalls.load(), 0) << "a consumer faster than its producer never waited";
  EXPECT_EQ(told_ns.load(), pipeline->stats().consumer_stall_ns);
}

TEST_F(DataPipelineTest, SlotsAreDeviceMemoryGivenBackOnDestruction) {
  DatasetCatalog c = catalog();
  auto data = c.load(raw_source()).value();
  const std::uint64_t before = backend_->memory_in_use();
  {
    auto pipeline = DataPipeline::start(*backend_, data, {.batch = 8, .max_depth = 2}).value();
    EXPECT_GT(backend_->memory_in_use(), before);
    (void)pipeline->next().value();  // one in use, never released
  }
  EXPECT_EQ(backend_->memory_in_use(), before);
}

TEST_F(DataPipelineTest, FailsCleanlyWhenTheDeviceIsFull) {
  auto small = accel::make_cpu_backend({.memory_bytes = 4096, .workers = 1});
  DatasetCatalog c = catalog();
  auto data = c.load(raw_source()).value();
  auto pipeline = DataPipeline::start(*small, data, {.batch = 16, .max_depth = 8});
  ASSERT_FALSE(pipeline.ok());
  EXPECT_EQ(pipeline.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(small->memory_in_use(), 0u);
}

}  // namespace
}  // namespace malv::offload
