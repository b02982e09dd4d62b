// Scheduler traces for learned-sjf's model: what `malv sjf record` writes
// (bench/sjf_workload.h) and `malv sjf train` reads.
//
// A trace is CSV with the header
//   kernel_id,priority_class,est_flops,est_bytes,queue_id,waited_ns,run_ns
// and one line per outcome the vGPU scheduler reported: the observation of
// the item at the head of a batch that ran, and the batch's measured run
// time in ns (> 0). sjf_feature_table() turns the rows into the model's
// inputs, include/malv/sjf_features.h's, and its target
// malv_sjf_target(run_ns), as a FeatureTable for train/model_training.h.
//
//   MALV_ASSIGN_OR_RETURN(FeatureTable table, read_sjf_trace("trace.csv"));
//   MALV_ASSIGN_OR_RETURN(TrainedModel m, train_mlaas_model(table, {.targets = {"target"}, ...}));
//   neutralise_constant_inputs(m.model, table);
#pragma once

#include <string>

#include "malv/result.h"
#include "mlaas/mlp.h"
#include "train/feature_table.h"

namespace malv::train {

inline constexpr const char* kSjfTargetColumn = "target";

// The trace's rows as features f0..f18 and "target"; errors name the file
// and line (a missing column, a run_ns <= 0, a negative size).
[[nodiscard]] Result<FeatureTable> sjf_feature_table(const FeatureTable& trace);
[[nodiscard]] Result<FeatureTable> read_sjf_trace(const std::string& path);

// An input that never changed in the table's rows (a kernel the recording
// never ran, a priority class it never had) taught the model nothing, but a
// trained model still weighs it: a value the recording never had would
// shift every prediction by an untrained amount. This moves such an input's
// first-layer weights into the biases at the value it had, so predictions
// on the table's rows stay exactly as they were and the input no longer
// counts. (Online training through model_train can still learn it.)
[[nodiscard]] Result<mlaas::Mlp> neutralise_constant_inputs(const mlaas::Mlp& model,
                                                            const FeatureTable& table);

}  // namespace malv::train
