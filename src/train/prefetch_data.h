// The learned prefetch policy's training data: what `malv prefetch record`
// writes, the rows `malv prefetch train` trains on, and how a trained model
// and the heuristics compare on recorded data none of them chose.
//
// A record is a CSV (train/feature_table.h's format) of prefetch outcomes in
// the order the policy heard them, one line per decision period:
//
//   run,stream_id,current_depth,max_depth,consumption_per_s,production_per_s,
//   consumer_stall_ns,depth_used,stall_next_ns
//
// the observation at decision time, the depth that applied next and the
// consumer's stall while it did. `run` numbers the recorded runs (a run's
// periods are consecutive). Each period's depth is uniform in 1..max_depth
// (the recorder's explore policy draws one and keeps it for three periods
// on average), which is what lets
// estimate_policies() say, without running them, what stall another policy
// would have had: a period counts for a policy when the policy would have
// chosen the depth that was drawn, weighted by max_depth (inverse
// propensity scoring).
//
// Training rows replay each run's periods through
// include/malv/prefetch_features.h exactly as the policy does at run time:
// inputs for the depth used, target malv_prefetch_stall_target(stall steps
// of the next period).
//
//   MALV_ASSIGN_OR_RETURN(auto record, read_prefetch_record({"a.csv"}));
//   FeatureTable table = prefetch_training_table(record, "a.csv");
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "malv/mlaas.h"
#include "malv/result.h"
#include "mlaas/mlp.h"
#include "train/feature_table.h"

namespace malv::train {

inline constexpr const char* kPrefetchTargetName = "stall_next";

struct PrefetchRecordRow {
  std::uint64_t run = 0;
  malv_prefetch_outcome outcome{};
};

[[nodiscard]] Status write_prefetch_record(const std::vector<PrefetchRecordRow>& rows,
                                           const std::string& path);
// Reads one or more records; runs are renumbered so that every file's are
// its own. Errors name the file, line and column.
[[nodiscard]] Result<std::vector<PrefetchRecordRow>> read_prefetch_record(
    const std::vector<std::string>& paths);

// Features (prefetch_features.h's, named f0..f8) and the target column.
FeatureTable prefetch_training_table(const std::vector<PrefetchRecordRow>& rows,
                                     const std::string& origin);

// Mean stall (consumer steps per period) each policy would have had on rows
// [first, end), by inverse propensity scoring; `matched` counts the periods
// where the policy's depth was the one drawn.
struct PolicyEstimate {
  double stall_steps = 0;
  std::size_t matched = 0;
};
struct PrefetchComparison {
  std::size_t periods = 0;
  PolicyEstimate learned;   // the model, with the module's rule (malv_prefetch_pick)
  PolicyEstimate adaptive;  // malv_prefetch_basic's adaptive rule
  PolicyEstimate fixed;     // the baseline's depth, min(2, max_depth)
  double recorded = 0;      // the drawn depths' own mean stall
};
PrefetchComparison compare_prefetch_policies(const mlaas::Mlp& model,
                                             const std::vector<PrefetchRecordRow>& rows,
                                             std::size_t first);

}  // namespace malv::train
