// Training rows for the learned memory policy's model, from recorded access
// traces (vgpu/access_trace.h): what `malv memory train` trains on, and how
// well a model orders a decision's candidates.
//
// A sample is one eviction candidate at one op: at the op with index t,
// every live buffer that has been used at least once and that op t does not
// use. Its inputs are malv_memory_features() of its history as of op t
// (vgpu/memory_history.h), its target malv_memory_distance_target() of the
// ops until its next use after t, or of MALV_MEMORY_FAR_OPS when it is not
// used again before its free or the trace's end. Rows are kept by whole
// ops (all the op's candidates, in buffer-id order): each op gets a seeded
// hash of its number among all ops of all the traces, uniform in [0, 1), and
// the ops kept are those under a threshold: 1/sample_every, lowered as far
// as needed to keep at most max_rows rows. So the same traces and options
// give the same rows, the sample is spread over the whole trace (the last
// rows, held out, are its end), and a bigger max_rows only adds ops.
//
//   MALV_ASSIGN_OR_RETURN(MemoryTrainingRows rows,
//                         read_memory_training_rows({"vm-a.trace"}, {.max_rows = 40000}));
//   // rows.columns: the feature names, then kMemoryTargetName
//   MALV_TRY(write_memory_training_csv(rows, "rows.csv"));  // `malv mlaas train --data`
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"
#include "vgpu/access_trace.h"
#include "vgpu/memory_history.h"

namespace malv::mlaas {
class Mlp;
}

namespace malv::vgpu {

struct MemoryTrainingOptions {
  // At most this many rows, as many as whole ops allow (0: no limit).
  std::uint64_t max_rows = 40000;
  // At most one op in sample_every (0 or 1: every op, up to max_rows).
  std::uint64_t sample_every = 0;
  std::uint64_t seed = 1;
};

struct NamedTrace {
  std::string name;  // opens every error message
  std::span<const AccessRecord> records;
};

struct MemoryTrainingRows {
  static constexpr std::size_t kColumns = MALV_MEMORY_FEATURE_COUNT + 1;

  std::vector<std::string> columns;          // memory_feature_names(), then kMemoryTargetName
  std::vector<float> values;                 // rows() x kColumns, row-major, the target last
  std::vector<std::uint64_t> ops_until_use;  // per row: next use - t, or MALV_MEMORY_FAR_OPS
  std::vector<std::uint64_t> decision;       // per row: the op it is a candidate at, the
                                             // ops numbered 0, 1, ... over all the traces
  std::vector<std::uint64_t> buffer_id;      // per row: the candidate, as the trace names it
  std::uint64_t ops = 0;                     // ops in the traces
  std::uint64_t sampled_ops = 0;             // ops whose candidates were kept
  std::uint64_t candidates = 0;              // samples before subsampling
  double sample_every = 1;                   // ops with candidates over sampled_ops (1: every op)

  std::size_t rows() const { return ops_until_use.size(); }
  const float* features(std::size_t row) const { return values.data() + row * kColumns; }
  float target(std::size_t row) const { return values[row * kColumns + kColumns - 1]; }
};

// Validates each trace (validate_access_trace), then extracts the rows.
// kInvalidArgument when the traces hold no candidate at all.
[[nodiscard]] Result<MemoryTrainingRows> extract_memory_training_rows(
    std::span<const NamedTrace> traces, const MemoryTrainingOptions& options);
// The same from trace files (read_access_trace: errors name the file).
[[nodiscard]] Result<MemoryTrainingRows> read_memory_training_rows(
    const std::vector<std::string>& paths, const MemoryTrainingOptions& options);

// The rows as train/feature_table.h's CSV (header of column names, one line
// per row), written atomically.
[[nodiscard]] Status write_memory_training_csv(const MemoryTrainingRows& rows,
                                               const std::string& path);

// How a model orders the candidates of one decision, on rows [first, rows()):
// of the pairs of candidates at the same op whose true next uses differ, the
// fraction it orders like them (a tie in its predictions counts half), and
// of the decisions with two candidates or more, the fraction where its first
// victim (largest prediction) has the furthest true next use. The same for
// LRU (prediction: ops since the last use), the reference to beat.
struct EvictionOrderAgreement {
  std::uint64_t pairs = 0;
  std::uint64_t decisions = 0;
  double model_pairs = 0;
  double lru_pairs = 0;
  double model_first_victim = 0;
  double lru_first_victim = 0;
};
EvictionOrderAgreement eviction_order_agreement(const mlaas::Mlp& model,
                                                const MemoryTrainingRows& rows, std::size_t first);

}  // namespace malv::vgpu
