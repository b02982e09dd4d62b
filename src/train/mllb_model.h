// The learned load balancer's (MLLB's) model: training it on a dump of
// Linux's can_migrate_task() decisions and scoring it, what `malv mllb
// train` and `malv mllb eval` run (docs/mllb.md).
//
// The model's inputs are malv_mllb_features() (include/malv/mllb_features.h)
// of each row's malv_cpu_migration (train/mllb_dump.h), its one output is
// trained towards the label (0 or 1) with the project's one training path
// (train/model_training.h, mse loss), and malv_mllb_migrate() turns the
// output into the decision. Scoring runs the model with mlaas::Mlp, the
// code the host's inference service runs; LAKE's reference MLP (15-10-1,
// from mllb_reference_weights.json) is scored on the same rows from its own
// 15 inputs (mllb_reference_inputs()).
//
//   MALV_ASSIGN_OR_RETURN(MllbDump dump, read_mllb_dump("raw_tag1.csv"));
//   MALV_ASSIGN_OR_RETURN(MllbTraining t, train_mllb_model(dump, {.seed = 1}));
//   MALV_TRY(save_trained_model(t.trained, "malv_mllb.safetensors"));
//   MALV_ASSIGN_OR_RETURN(MllbScores s, score_mllb_model(t.trained.model, dump,
//                                                        select_mllb_rows(dump, MllbRows::kAll)));
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "malv/mllb_features.h"
#include "mlaas/mlp.h"
#include "train/mllb_dump.h"
#include "train/model_training.h"

namespace malv::train {

// The names of malv_mllb_features()'s outputs, in order: the model file's
// `features` metadata.
extern const std::array<std::string_view, MALV_MLLB_FEATURE_COUNT> kMllbFeatureNames;
// The model file's `targets` metadata.
inline constexpr std::string_view kMllbTargetName = "can_migrate";

// Which rows are trained on and scored: every row, or only those whose task
// is not running (p_running == 0; LAKE's prep.py keeps only these, since the
// kernel never moves a running task).
enum class MllbRows { kAll, kNotRunning };
// "all" or "not-running".
[[nodiscard]] Result<MllbRows> parse_mllb_rows(std::string_view name);
std::string_view mllb_rows_name(MllbRows rows);
// The indices of the dump's samples that `rows` keeps, in file order.
std::vector<std::size_t> select_mllb_rows(const MllbDump& dump, MllbRows rows);

// malv_mllb_features() of the given samples, rows x MALV_MLLB_FEATURE_COUNT.
std::vector<float> mllb_feature_matrix(const MllbDump& dump, std::span<const std::size_t> rows);

// Figures of a model's decisions against the labels on some rows. Precision
// is 0 when the model says yes to no row, recall 0 when no row is labelled 1
// (scikit-learn's convention).
struct MllbScores {
  std::size_t rows = 0;
  std::size_t positives = 0;            // rows labelled 1
  std::size_t predicted_positives = 0;  // rows the model says yes to
  std::size_t true_positives = 0;
  std::size_t correct = 0;
  double accuracy = 0;
  double precision = 0;
  double recall = 0;
  double balanced_accuracy = 0;              // mean of the recall of each class
  double majority_accuracy = 0;              // always answering the commoner label of these rows
  std::optional<double> reference_accuracy;  // LAKE's reference MLP on the same rows
};

// Scores `model` (MALV_MLLB_FEATURE_COUNT inputs, 1 output) on the given
// samples: yes where malv_mllb_migrate(output). With a reference (15 inputs,
// 1 output, yes above 0.5 as LAKE's) its accuracy too. At least one row.
[[nodiscard]] Result<MllbScores> score_mllb_model(const mlaas::Mlp& model, const MllbDump& dump,
                                                  std::span<const std::size_t> rows,
                                                  const mlaas::Mlp* reference = nullptr);

// A model file that fits malv_mllb_features(): MALV_MLLB_FEATURE_COUNT
// inputs and one output; otherwise an error naming the widths.
[[nodiscard]] Result<mlaas::Mlp> load_mllb_model(const std::string& path);
// LAKE's reference MLP from mllb_reference_weights.json (w1 [15][10]
// input-major, b1 [10], w2 [10], b2; relu hidden layer, identity output).
[[nodiscard]] Result<mlaas::Mlp> load_mllb_reference(const std::string& path);
[[nodiscard]] Result<mlaas::Mlp> parse_mllb_reference(std::string_view json,
                                                      std::string_view origin);
// The shipped model: malv_mllb.safetensors in the policy modules' directory
// (mlaas/policy_dir.h: $MALV_POLICY_DIR, an installed prefix's, or the
// build's), where the `mllb` module finds it; if it is not there, the copy
// in this build's source tree (src/policies/cpu_sched/) when that exists.
std::string default_mllb_model_path();
// LAKE's weights: mllb_reference_weights.json beside the data file, else the
// copy in ../shared/data/mllb beside this build's source tree; "" if neither
// exists.
std::string default_mllb_reference_path(const std::string& data_path);

struct MllbTrainingOptions {
  std::string model = "15-16-1";  // widths, inputs first (MALV_MLLB_FEATURE_COUNT, ..., 1)
  std::uint64_t epochs = 60;
  std::int64_t batch = 32;
  float lr = 3e-3f;
  // Fraction of rows held out, drawn by the seed separately from each label
  // (stratified), so both parts have the file's share of 1s. 0: none.
  double holdout = 0.2;
  std::uint64_t seed = 1;
  MllbRows rows = MllbRows::kAll;  // rows trained on (and held out from)
};

struct MllbTraining {
  TrainedModel trained;                   // the model, and the training path's report (mse)
  std::vector<std::size_t> train_rows;    // sample indices
  std::vector<std::size_t> holdout_rows;  // sample indices
  MllbScores train_scores;
  // On the held-out rows (none when nothing is held out): all of them, and
  // those of them whose task is not running.
  std::optional<MllbScores> holdout_all;
  std::optional<MllbScores> holdout_not_running;
  double seconds = 0;  // time train_mlaas_model took
};

// Splits, trains (train_mlaas_model, mse loss, the held-out rows last so
// that its per-epoch figures are on them) and scores.
[[nodiscard]] Result<MllbTraining> train_mllb_model(const MllbDump& dump,
                                                    const MllbTrainingOptions& options,
                                                    const mlaas::Mlp* reference = nullptr,
                                                    const EpochFn& progress = {});

// Stratified k-fold cross-validation: the selected rows in `folds` parts
// (each label dealt round-robin in a seeded order), a model trained on all
// parts but one and scored on that one, for each part. options.holdout is
// not used. Scores per fold, on the fold's rows and on its not-running rows.
struct MllbFold {
  MllbScores all;
  std::optional<MllbScores> not_running;
};
[[nodiscard]] Result<std::vector<MllbFold>> cross_validate_mllb(
    const MllbDump& dump, const MllbTrainingOptions& options, std::size_t folds,
    const mlaas::Mlp* reference = nullptr);

}  // namespace malv::train
