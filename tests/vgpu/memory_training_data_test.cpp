// The learned memory policy's inputs from access traces: the training rows
// of `malv memory train` (exact on a hand-made trace, sampled
// deterministically), bad traces named, and the `learned` replay policy's
// refusals and its order (a model of the age alone is LRU).
#include "vgpu/memory_training_data.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <span>

#include "base/atomic_file.h"
#include "memory_trace_builder.h"
#include "mlaas/mlp.h"
#include "vgpu/memory_history.h"
#include "vgpu/trace_replay.h"

namespace malv::vgpu {
namespace {

using testing::MemoryTraceBuilder;
using testing::training_loop_trace;

Result<MemoryTrainingRows> extract(std::span<const AccessRecord> trace,
                                   const MemoryTrainingOptions& options = {}) {
  const NamedTrace named{"test.trace", trace};
  return extract_memory_training_rows(std::span(&named, 1), options);
}

struct ExpectedRow {
  std::uint64_t op = 0;
  std::uint64_t buffer = 0;
  std::uint64_t ops_since_use = 0;
  std::vector<std::uint64_t> gaps;  // latest first
  std::uint64_t ops_until_use = 0;  // MALV_MEMORY_FAR_OPS: not used again
};

TEST(MemoryTrainingData, AHandMadeTraceGivesExactlyTheExpectedRows) {
  // Buffer 4 is allocated but never used: never a candidate. Buffer 2 is
  // freed after op 6 (not used again before: far), buffers 1 and 3 are last
  // used at ops 8 and 7 and the trace ends.
  MemoryTraceBuilder t;
  t.alloc(1, 100).alloc(2, 100).alloc(3, 100);
  t.op({}, {1}).op({}, {2});
  t.alloc(4, 100);
  t.op({1}).op({}, {3}).op({1, 2}).op({3}).op({1});
  t.free(2);
  t.op({3}).op({1});
  const std::uint64_t far = MALV_MEMORY_FAR_OPS;
  const std::vector<ExpectedRow> expected = {
      {1, 1, 1, {}, 1},         // op 1: 1 (used at 0), next at 2
      {2, 2, 1, {}, 2},         // op 2: 2 (used at 1), next at 4
      {3, 1, 1, {2}, 1},        // op 3: 1 (used at 0, 2), next at 4
      {3, 2, 2, {}, 1},         //       2 (used at 1), next at 4
      {4, 3, 1, {}, 1},         // op 4: 3 (used at 3), next at 5
      {5, 1, 1, {2, 2}, 1},     // op 5: 1 (used at 0, 2, 4), next at 6
      {5, 2, 1, {3}, far},      //       2 (used at 1, 4), freed before another use
      {6, 2, 2, {3}, far},      // op 6: 2 again
      {6, 3, 1, {2}, 1},        //       3 (used at 3, 5), next at 7
      {7, 1, 1, {2, 2, 2}, 1},  // op 7: 1 (used at 0, 2, 4, 6), next at 8
      {8, 3, 1, {2, 2}, far},   // op 8: 3 (used at 3, 5, 7), the trace ends
  };
  Result<MemoryTrainingRows> rows = extract(t.records(), {.max_rows = 0});
  ASSERT_TRUE(rows.ok()) << rows.error().to_string();
  ASSERT_EQ(rows->rows(), expected.size());
  EXPECT_EQ(rows->ops, 9u);
  EXPECT_EQ(rows->candidates, expected.size());
  EXPECT_EQ(rows->sample_every, 1.0);
  ASSERT_EQ(rows->columns.size(), MemoryTrainingRows::kColumns);
  EXPECT_EQ(rows->columns.front(), "log_ops_since_use");
  EXPECT_EQ(rows->columns.back(), kMemoryTargetName);
  for (std::size_t r = 0; r < expected.size(); ++r) {
    const ExpectedRow& e = expected[r];
    SCOPED_TRACE(::testing::Message() << "row " << r << ": op " << e.op << ", buffer " << e.buffer);
    EXPECT_EQ(rows->decision[r], e.op);
    EXPECT_EQ(rows->buffer_id[r], e.buffer);
    EXPECT_EQ(rows->ops_until_use[r], e.ops_until_use);
    malv_memory_observation o{};
    o.ops_since_use = e.ops_since_use;
    std::copy(e.gaps.begin(), e.gaps.end(), o.reuse_gaps);
    o.gap_count = static_cast<std::uint32_t>(e.gaps.size());
    float want[MALV_MEMORY_FEATURE_COUNT];
    malv_memory_features(&o, want);
    for (std::size_t c = 0; c < MALV_MEMORY_FEATURE_COUNT; ++c) {
      EXPECT_EQ(rows->features(r)[c], want[c]) << "column " << rows->columns[c];
    }
    EXPECT_EQ(rows->target(r), malv_memory_distance_target(e.ops_until_use));
  }
}

TEST(MemoryHistory, CountsFromTheAllocationUntilTheFirstUseAndKeepsTheLatestGaps) {
  MemoryHistory history(1);
  history.allocate(0, 5);
  malv_memory_observation o{};
  history.observe(0, 9, o);
  EXPECT_FALSE(history.used(0));
  EXPECT_EQ(o.ops_since_use, 4u);
  EXPECT_EQ(o.gap_count, 0u);
  // Uses at 10, 11, 13, 16, ... (gaps 1, 2, 3, ... 11): the last 8, latest first.
  std::uint64_t op = 10;
  for (std::uint64_t gap = 1; gap <= 12; ++gap) {
    history.use(0, op);
    op += gap;
  }
  history.observe(0, op, o);  // op: the last use (op - 12) plus 12
  EXPECT_EQ(o.ops_since_use, 12u);
  ASSERT_EQ(o.gap_count, static_cast<std::uint32_t>(MALV_MEMORY_GAP_HISTORY));
  for (std::size_t i = 0; i < MALV_MEMORY_GAP_HISTORY; ++i) EXPECT_EQ(o.reuse_gaps[i], 11 - i);
}

TEST(MemoryTrainingData, SamplingKeepsWholeOpsDeterministicallyNearMaxRows) {
  const std::vector<AccessRecord> trace = training_loop_trace(40, 6);
  Result<MemoryTrainingRows> all = extract(trace, {.max_rows = 0});
  ASSERT_TRUE(all.ok()) << all.error().to_string();
  EXPECT_EQ(all->rows(), all->candidates);
  EXPECT_EQ(all->sampled_ops, all->ops - 2);  // ops 0 and 1 have no candidates
  EXPECT_GT(all->rows(), 20000u);

  const std::uint64_t max_rows = all->rows() / 4;
  Result<MemoryTrainingRows> some = extract(trace, {.max_rows = max_rows, .seed = 7});
  Result<MemoryTrainingRows> again = extract(trace, {.max_rows = max_rows, .seed = 7});
  Result<MemoryTrainingRows> other = extract(trace, {.max_rows = max_rows, .seed = 8});
  ASSERT_TRUE(some.ok() && again.ok() && other.ok());
  EXPECT_LE(some->rows(), max_rows);
  EXPECT_GT(some->rows(), max_rows * 3 / 4);
  EXPECT_NEAR(some->sample_every, 4.0, 0.5);
  EXPECT_GT(some->decision.back(), all->ops * 95 / 100) << "the sample stops early";
  EXPECT_EQ(some->values, again->values);
  EXPECT_EQ(some->decision, again->decision);
  EXPECT_NE(some->decision, other->decision);
  // A sampled op keeps all its candidates: the rows of an op are all of it.
  for (std::size_t r = 0; r < some->rows(); ++r) {
    const auto count = [&](const MemoryTrainingRows& rows) {
      return std::count(rows.decision.begin(), rows.decision.end(), some->decision[r]);
    };
    if (r + 1 < some->rows() && some->decision[r] == some->decision[r + 1]) continue;
    EXPECT_EQ(count(*some), count(*all)) << "op " << some->decision[r];
  }
  // sample_every alone: about one op in 3.
  Result<MemoryTrainingRows> third = extract(trace, {.max_rows = 0, .sample_every = 3});
  ASSERT_TRUE(third.ok());
  EXPECT_NEAR(static_cast<double>(third->sampled_ops), (all->ops - 1) / 3.0, all->ops * 0.05);
}

TEST(MemoryTrainingData, ATraceWithNoCandidateIsRefused) {
  MemoryTraceBuilder t;
  t.alloc(1, 100).op({}, {1}).op({1});
  Result<MemoryTrainingRows> rows = extract(t.records());
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(rows.error().message().find("test.trace: no samples"), std::string::npos)
      << rows.error().message();
}

class MemoryTrainingFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("malv-memory-training-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

TEST_F(MemoryTrainingFiles, AnUnreadableOrCorruptTraceIsNamed) {
  const std::vector<AccessRecord> trace = training_loop_trace(2, 2);
  const std::vector<std::byte> bytes = encode_access_trace(trace);
  ASSERT_TRUE(write_file_atomically(path("good.trace"), bytes).ok());
  ASSERT_TRUE(
      write_file_atomically(path("short.trace"), std::span(bytes).first(bytes.size() - 7)).ok());

  Result<MemoryTrainingRows> missing =
      read_memory_training_rows({path("good.trace"), path("missing.trace")}, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().to_string().find("missing.trace"), std::string::npos)
      << missing.error().to_string();

  Result<MemoryTrainingRows> corrupt = read_memory_training_rows({path("short.trace")}, {});
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.error().message().find("short.trace: record"), std::string::npos)
      << corrupt.error().message();
  EXPECT_NE(corrupt.error().message().find("truncated"), std::string::npos)
      << corrupt.error().message();

  // Two good traces: rows of both, ops numbered across them.
  Result<MemoryTrainingRows> two =
      read_memory_training_rows({path("good.trace"), path("good.trace")}, {.max_rows = 0});
  Result<MemoryTrainingRows> one = read_memory_training_rows({path("good.trace")}, {.max_rows = 0});
  ASSERT_TRUE(two.ok() && one.ok());
  EXPECT_EQ(two->rows(), 2 * one->rows());
  EXPECT_EQ(two->decision[one->rows()], one->decision.front() + one->ops);

  // The CSV reads back as the same numbers.
  ASSERT_TRUE(write_memory_training_csv(*one, path("rows.csv")).ok());
  std::ifstream csv(path("rows.csv"));
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header.substr(0, header.find(',')), "log_ops_since_use");
  EXPECT_TRUE(header.ends_with(std::string(",") + std::string(kMemoryTargetName))) << header;
  std::size_t lines = 0;
  for (std::string line; std::getline(csv, line);) {
    std::size_t start = 0;
    for (std::size_t c = 0; c < MemoryTrainingRows::kColumns; ++c) {
      const std::size_t comma = line.find(',', start);
      EXPECT_EQ(std::stof(line.substr(start, comma - start)),
                one->values[lines * MemoryTrainingRows::kColumns + c]);
      start = comma + 1;
    }
    ++lines;
  }
  EXPECT_EQ(lines, one->rows());
}

// A one-layer model: weight `w` on each feature, bias `b`.
mlaas::Mlp linear_model(std::vector<float> w, float b = 0) {
  mlaas::DenseLayer layer{.in = w.size(), .out = 1, .weight = std::move(w), .bias = {b}};
  return mlaas::Mlp::create({std::move(layer)}).value();
}

TEST(TraceReplayLearned, AModelOfTheWrongWidthIsRefusedNamingTheWidths) {
  const std::vector<AccessRecord> trace = training_loop_trace(2, 2);
  Result<TraceReplay> replay = TraceReplay::create(trace);
  ASSERT_TRUE(replay.ok());
  const mlaas::Mlp narrow = linear_model(std::vector<float>(8, 1.0f));
  Result<ReplayCounts> counts =
      replay->run({.capacity_bytes = 1 << 20, .policy = ReplayPolicy::kLearned, .model = &narrow});
  ASSERT_FALSE(counts.ok());
  EXPECT_EQ(counts.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(counts.error().message().find("takes 8 inputs and gives 1 outputs"), std::string::npos)
      << counts.error().message();
  EXPECT_NE(counts.error().message().find("takes 10 inputs"), std::string::npos)
      << counts.error().message();

  Result<ReplayCounts> none =
      replay->run({.capacity_bytes = 1 << 20, .policy = ReplayPolicy::kLearned});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message().find("needs a model"), std::string::npos)
      << none.error().message();
  EXPECT_EQ(parse_replay_policy("learned"), ReplayPolicy::kLearned);
  EXPECT_EQ(replay_policy_name(ReplayPolicy::kLearned), "learned");
}

TEST(TraceReplayLearned, AModelOfTheAgeAloneEvictsAsLruDoes) {
  // Predicted distance = log1p(ops since the last use): the oldest goes first.
  std::vector<float> w(MALV_MEMORY_FEATURE_COUNT, 0.0f);
  w[0] = 1.0f;
  const mlaas::Mlp age = linear_model(w);
  // And its opposite, most recently used first, moves more on a loop.
  w[0] = -1.0f;
  const mlaas::Mlp youth = linear_model(w);
  const std::vector<AccessRecord> trace = training_loop_trace(6, 4);
  Result<TraceReplay> replay = TraceReplay::create(trace);
  ASSERT_TRUE(replay.ok());
  for (std::uint64_t capacity : {600u << 10, 900u << 10, 1200u << 10}) {
    SCOPED_TRACE(capacity);
    Result<ReplayCounts> lru =
        replay->run({.capacity_bytes = capacity, .policy = ReplayPolicy::kLru});
    Result<ReplayCounts> learned =
        replay->run({.capacity_bytes = capacity, .policy = ReplayPolicy::kLearned, .model = &age});
    ASSERT_TRUE(lru.ok() && learned.ok());
    EXPECT_GT(lru->bytes_moved(), 0u);
    EXPECT_EQ(learned->bytes_in, lru->bytes_in);
    EXPECT_EQ(learned->bytes_out, lru->bytes_out);
    EXPECT_EQ(learned->faults, lru->faults);
    EXPECT_EQ(learned->evictions, lru->evictions);
    Result<ReplayCounts> mru = replay->run(
        {.capacity_bytes = capacity, .policy = ReplayPolicy::kLearned, .model = &youth});
    ASSERT_TRUE(mru.ok());
    EXPECT_NE(mru->bytes_moved(), lru->bytes_moved());
  }
}

}  // namespace
}  // namespace malv::vgpu
