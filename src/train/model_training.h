// Training an MLaaS model from recorded features: what `malv mlaas train`
// runs, and the one training path of every learned policy's model.
//
// From a FeatureTable (train/feature_table.h) and the names of its target
// columns, it
//  1. splits off the held-out part (the last fraction of the rows, or a
//     seeded random fraction) and standardises inputs, and regression
//     targets, with the training part's mean and standard deviation;
//  2. trains an nn::Mlp of the given widths on an in-process CPU device
//     (nn::NativeDevice), Adam, seeded mini-batches, one pass a epoch;
//     after each epoch it evaluates on both parts and reports;
//  3. exports the model with the scaling folded in (train/mlaas_export.h),
//     evaluates the exported model on the held-out part against a baseline
//     (the training targets' mean for mse, the majority class for xent).
// save_trained_model() writes the file mlaas::Mlp::load reads.
//
//   TrainingOptions options{.targets = {"y"}, .model = "2-16-1"};
//   MALV_ASSIGN_OR_RETURN(TrainedModel trained, train_mlaas_model(table, options));
//   MALV_TRY(save_trained_model(trained, "model.safetensors"));
//   fmt::print("held-out mse {} (baseline {})\n", trained.report.holdout->loss,
//              trained.report.baseline.loss);
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlaas/mlp.h"
#include "nn/mlp.h"
#include "train/feature_table.h"

namespace malv::train {

enum class HoldoutSplit {
  kLast,      // the last rows of the file (recorded features in time order: the future)
  kShuffled,  // a random fraction of rows, by the seed
};

// "last" or "shuffled".
[[nodiscard]] Result<HoldoutSplit> parse_holdout_split(std::string_view name);
std::string_view holdout_split_name(HoldoutSplit split);

struct TrainingOptions {
  std::vector<std::string> targets;   // target columns: one per output (mse), one (xent)
  std::vector<std::string> features;  // input columns; empty: every non-target column, in order
  std::string model;                  // widths "8-32-32-1" (or "mlp:8-32-32-1"), inputs first
  nn::Loss loss = nn::Loss::kMeanSquaredError;
  std::uint64_t epochs = 20;
  std::int64_t batch = 64;
  float lr = 1e-3f;      // Adam
  double holdout = 0.2;  // fraction of rows held out for evaluation, in [0, 1)
  HoldoutSplit split = HoldoutSplit::kLast;
  std::uint64_t seed = 1;  // initial weights, example order, shuffled split
};

// mse: loss is the mean over every element of (prediction - target)^2, in
// the targets' own units. xent: loss is the mean cross-entropy (nats) and
// accuracy the fraction of rows whose most likely class is the label.
struct Metrics {
  double loss = 0;
  std::optional<double> accuracy;  // xent only
};

struct EpochReport {
  std::uint64_t epoch = 0;  // 1-based
  std::uint64_t epochs = 0;
  Metrics train;
  std::optional<Metrics> holdout;  // none when nothing is held out
};
using EpochFn = std::function<void(const EpochReport&)>;

struct TrainingReport {
  std::vector<std::string> features;
  std::vector<std::string> targets;
  std::string model;  // "mlp:8-32-32-1"
  nn::Loss loss = nn::Loss::kMeanSquaredError;
  std::size_t train_rows = 0;
  std::size_t holdout_rows = 0;
  std::uint64_t steps = 0;
  std::vector<EpochReport> epochs;
  // The exported model's figures: on the held-out part (none when nothing is
  // held out), and the baseline's on the held-out part (on the training part
  // when nothing is held out).
  Metrics train;
  std::optional<Metrics> holdout;
  Metrics baseline;
};

struct TrainedModel {
  mlaas::Mlp model;  // takes raw features, in TrainingReport::features order
  TrainingReport report;
};

// Checks the options against the table (errors name the columns, rows and
// widths at fault), trains, and reports each epoch to `progress`.
[[nodiscard]] Result<TrainedModel> train_mlaas_model(const FeatureTable& table,
                                                     const TrainingOptions& options,
                                                     const EpochFn& progress = {});

// The .safetensors of trained.model (mlaas/mlp.h's layout), with metadata
// saying what it was trained on: "features", "targets" (comma-separated
// column names), "loss", "inputs" = "raw".
[[nodiscard]] Status save_trained_model(const TrainedModel& trained, const std::string& path);

}  // namespace malv::train
