// The learned memory policy end to end: a model trained (train/, the one
// training path) on the rows of one run of a periodic training loop's trace
// replays another run of it moving far fewer bytes than LRU and close to
// Belady's. No timing is asserted.
#include <gtest/gtest.h>

#include <string>

#include "memory_trace_builder.h"
#include "train/feature_table.h"
#include "train/model_training.h"
#include "vgpu/memory_training_data.h"
#include "vgpu/trace_replay.h"

namespace malv::vgpu {
namespace {

// What `malv memory train` does with the rows.
train::FeatureTable feature_table(const MemoryTrainingRows& rows) {
  train::FeatureTable table;
  table.origin = "training.trace";
  table.columns = rows.columns;
  table.values = rows.values;
  for (std::size_t r = 0; r < rows.rows(); ++r) table.lines.push_back(r + 2);
  return table;
}

TEST(LearnedReplay, AModelTrainedOnAPeriodicLoopMovesFarLessThanLruAndNearBelady) {
  const std::vector<AccessRecord> training = testing::training_loop_trace(40, 6);
  const NamedTrace named{"training.trace", training};
  Result<MemoryTrainingRows> rows = extract_memory_training_rows(std::span(&named, 1), {});
  ASSERT_TRUE(rows.ok()) << rows.error().to_string();
  EXPECT_GT(rows->rows(), 20000u);
  EXPECT_LE(rows->rows(), 40000u);

  train::TrainingOptions options{
      .targets = {std::string(kMemoryTargetName)}, .model = "10-32-32-1", .epochs = 20, .seed = 1};
  Result<train::TrainedModel> trained = train::train_mlaas_model(feature_table(*rows), options);
  ASSERT_TRUE(trained.ok()) << trained.error().to_string();
  const train::TrainingReport& report = trained->report;
  ASSERT_TRUE(report.holdout.has_value());
  EXPECT_LT(report.holdout->loss, report.baseline.loss);
  const EvictionOrderAgreement order =
      eviction_order_agreement(trained->model, *rows, report.train_rows);
  EXPECT_GT(order.pairs, 1000u);
  EXPECT_GT(order.model_pairs, 0.9) << "lru orders " << order.lru_pairs;
  EXPECT_GT(order.model_pairs, order.lru_pairs + 0.3);
  EXPECT_GT(order.model_first_victim, order.lru_first_victim + 0.3);

  // Another run of the same loop, at capacities from half to 80% of what it allocates.
  const std::vector<AccessRecord> run = testing::training_loop_trace(12, 6);
  Result<TraceReplay> replay = TraceReplay::create(run, "run.trace");
  ASSERT_TRUE(replay.ok());
  const std::uint64_t peak = replay->peak_allocated_bytes();
  for (std::uint64_t percent : {50u, 65u, 80u}) {
    const std::uint64_t capacity = peak * percent / 100;
    SCOPED_TRACE(::testing::Message() << "capacity " << capacity << " (" << percent << "%)");
    auto moved = [&](ReplayPolicy policy) {
      Result<ReplayCounts> c =
          replay->run({.capacity_bytes = capacity, .policy = policy, .model = &trained->model});
      EXPECT_TRUE(c.ok()) << c.error().to_string();
      return c.ok() ? c->bytes_moved() : 0;
    };
    const std::uint64_t lru = moved(ReplayPolicy::kLru);
    const std::uint64_t belady = moved(ReplayPolicy::kBelady);
    const std::uint64_t learned = moved(ReplayPolicy::kLearned);
    EXPECT_GT(belady, 0u);
    EXPECT_LT(learned * 4, lru * 3) << "learned " << learned << ", lru " << lru;  // < 0.75x
    EXPECT_LE(learned * 10, belady * 13) << "learned " << learned << ", belady " << belady;
    ::testing::Test::RecordProperty("bytes_" + std::to_string(percent),
                                    std::to_string(learned) + " learned, " + std::to_string(lru) +
                                        " lru, " + std::to_string(belady) + " belady");
  }
}

}  // namespace
}  // namespace malv::vgpu
