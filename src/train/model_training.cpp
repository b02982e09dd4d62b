// Training an MLaaS model from recorded features (see model_training.h).
#include "train/model_training.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "mlaas/safetensors.h"
#include "nn/dataset.h"
#include "nn/native_device.h"
#include "train/mlaas_export.h"
#include "train/standardisation.h"

namespace malv::train {
namespace {

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

struct Columns {
  std::vector<std::size_t> features;
  std::vector<std::size_t> targets;
};

Result<Columns> pick_columns(const FeatureTable& table, const TrainingOptions& options) {
  Columns picked;
  if (options.targets.empty()) return invalid("no target column given");
  for (const std::string& name : options.targets) {
    MALV_ASSIGN_OR_RETURN(std::size_t index, table.column(name));
    if (std::find(picked.targets.begin(), picked.targets.end(), index) != picked.targets.end()) {
      return invalid(fmt::format("target column '{}' is given twice", name));
    }
    picked.targets.push_back(index);
  }
  auto is_target = [&](std::size_t index) {
    return std::find(picked.targets.begin(), picked.targets.end(), index) != picked.targets.end();
  };
  if (options.features.empty()) {
    for (std::size_t i = 0; i < table.columns.size(); ++i) {
      if (!is_target(i)) picked.features.push_back(i);
    }
  } else {
    for (const std::string& name : options.features) {
      MALV_ASSIGN_OR_RETURN(std::size_t index, table.column(name));
      if (is_target(index)) {
        return invalid(fmt::format("column '{}' is both a feature and a target", name));
      }
      if (std::find(picked.features.begin(), picked.features.end(), index) !=
          picked.features.end()) {
        return invalid(fmt::format("feature column '{}' is given twice", name));
      }
      picked.features.push_back(index);
    }
  }
  if (picked.features.empty()) {
    return invalid(fmt::format("{} has no column left as a feature besides the targets ({})",
                               table.origin, fmt::join(options.targets, ", ")));
  }
  return picked;
}

std::vector<std::string> names(const FeatureTable& table, const std::vector<std::size_t>& index) {
  std::vector<std::string> out;
  for (std::size_t i : index) out.push_back(table.columns[i]);
  return out;
}

Result<nn::MlpSpec> model_spec(const TrainingOptions& options, const FeatureTable& table,
                               const Columns& columns) {
  const std::string text =
      options.model.starts_with("mlp:") ? options.model : "mlp:" + options.model;
  MALV_ASSIGN_OR_RETURN(nn::MlpSpec spec, nn::MlpSpec::parse(text));
  const auto features = static_cast<std::int64_t>(columns.features.size());
  const auto targets = static_cast<std::int64_t>(columns.targets.size());
  if (spec.inputs() != features) {
    return invalid(fmt::format("model {} takes {} inputs, but there are {} features ({})",
                               options.model, spec.inputs(), features,
                               fmt::join(names(table, columns.features), ", ")));
  }
  if (options.loss == nn::Loss::kMeanSquaredError && spec.classes() != targets) {
    return invalid(fmt::format("model {} has {} outputs, but there are {} target columns ({})",
                               options.model, spec.classes(), targets,
                               fmt::join(options.targets, ", ")));
  }
  if (options.loss == nn::Loss::kSoftmaxXent) {
    if (targets != 1) {
      return invalid(fmt::format("loss xent takes one target column (the class), got {} ({})",
                                 targets, fmt::join(options.targets, ", ")));
    }
    if (spec.classes() < 2) {
      return invalid(fmt::format("model {} has {} output; loss xent needs one per class, 2 or more",
                                 options.model, spec.classes()));
    }
  }
  return spec;
}

struct Split {
  std::vector<std::size_t> train;    // row indices, in file order
  std::vector<std::size_t> holdout;  // row indices, in file order
};

Result<Split> split_rows(const FeatureTable& table, const TrainingOptions& options) {
  const std::size_t rows = table.rows();
  std::size_t held = 0;
  if (options.holdout > 0) {
    held = std::max<std::size_t>(
        1, static_cast<std::size_t>(std::llround(options.holdout * static_cast<double>(rows))));
  }
  if (held >= rows) {
    return invalid(fmt::format("{} has {} rows: holding out {} of them leaves none to train on",
                               table.origin, rows, held));
  }
  std::vector<bool> is_held(rows, false);
  if (options.split == HoldoutSplit::kLast) {
    for (std::size_t r = rows - held; r < rows; ++r) is_held[r] = true;
  } else {
    const std::vector<std::uint32_t> order = nn::shuffled_indices(
        static_cast<std::uint32_t>(rows), nn::derive_seed(options.seed, 0x686f6c64), 0);
    for (std::size_t i = 0; i < held; ++i) is_held[order[i]] = true;
  }
  Split split;
  for (std::size_t r = 0; r < rows; ++r) (is_held[r] ? split.holdout : split.train).push_back(r);
  return split;
}

std::vector<float> gather(const FeatureTable& table, const std::vector<std::size_t>& rows,
                          const std::vector<std::size_t>& columns) {
  std::vector<float> out;
  out.reserve(rows.size() * columns.size());
  for (std::size_t r : rows) {
    for (std::size_t c : columns) out.push_back(table.at(r, c));
  }
  return out;
}

Result<std::vector<std::int32_t>> class_labels(const FeatureTable& table,
                                               const std::vector<std::size_t>& rows,
                                               std::size_t column, std::int64_t classes) {
  std::vector<std::int32_t> labels;
  labels.reserve(rows.size());
  for (std::size_t r : rows) {
    const float v = table.at(r, column);
    if (v < 0 || v >= static_cast<float>(classes) || v != std::floor(v)) {
      return invalid(fmt::format(
          "{}: column '{}': {} is not a class (a whole number from 0 to {} for a model of {} "
          "outputs)",
          table.where(r), table.columns[column], v, classes - 1, classes));
    }
    labels.push_back(static_cast<std::int32_t>(v));
  }
  return labels;
}

Metrics squared_error(std::span<const float> predicted, std::span<const float> targets) {
  double sum = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const double d = static_cast<double>(predicted[i]) - targets[i];
    sum += d * d;
  }
  return Metrics{targets.empty() ? 0.0 : sum / static_cast<double>(targets.size()), {}};
}

// outputs: rows x classes, logits (from nn) or probabilities (from the
// exported model's softmax).
Metrics cross_entropy(std::span<const float> outputs, std::span<const std::int32_t> labels,
                      std::size_t classes, bool are_logits) {
  double loss = 0;
  std::size_t right = 0;
  for (std::size_t r = 0; r < labels.size(); ++r) {
    const std::span<const float> row = outputs.subspan(r * classes, classes);
    const auto best =
        static_cast<std::size_t>(std::max_element(row.begin(), row.end()) - row.begin());
    right += best == static_cast<std::size_t>(labels[r]) ? 1 : 0;
    const double mine = row[static_cast<std::size_t>(labels[r])];
    if (are_logits) {
      double sum = 0;
      for (float v : row) sum += std::exp(static_cast<double>(v) - row[best]);
      loss += std::log(sum) + row[best] - mine;
    } else {
      loss -= std::log(std::max(mine, static_cast<double>(std::numeric_limits<float>::min())));
    }
  }
  const auto n = static_cast<double>(std::max<std::size_t>(labels.size(), 1));
  return Metrics{loss / n, static_cast<double>(right) / n};
}

// The baseline a model must beat: the training targets' mean (mse), the
// training part's class frequencies, i.e. always the majority class (xent).
Metrics baseline_mse(std::span<const float> train_y, std::span<const float> eval_y,
                     std::size_t outputs) {
  const Standardisation s = Standardisation::fit(train_y, outputs);
  std::vector<float> predicted(eval_y.size());
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    predicted[i] = static_cast<float>(s.mean[i % outputs]);
  }
  return squared_error(predicted, eval_y);
}

Metrics baseline_xent(std::span<const std::int32_t> train_labels,
                      std::span<const std::int32_t> eval_labels, std::size_t classes) {
  std::vector<double> counts(classes, 1.0);  // Laplace smoothing: no class has p = 0
  for (std::int32_t label : train_labels) counts[static_cast<std::size_t>(label)] += 1;
  std::vector<float> probabilities(eval_labels.size() * classes);
  const double total = static_cast<double>(train_labels.size() + classes);
  for (std::size_t i = 0; i < probabilities.size(); ++i) {
    probabilities[i] = static_cast<float>(counts[i % classes] / total);
  }
  return cross_entropy(probabilities, eval_labels, classes, /*are_logits=*/false);
}

Status check_options(const TrainingOptions& options) {
  if (options.epochs == 0) return invalid("epochs must be at least 1");
  if (options.batch <= 0 || options.batch > (1 << 20)) {
    return invalid(fmt::format("batch must be 1 to {}, got {}", 1 << 20, options.batch));
  }
  if (!(options.lr > 0.0f) || !std::isfinite(options.lr)) {
    return invalid(fmt::format("learning rate must be a positive number, got {}", options.lr));
  }
  if (!(options.holdout >= 0.0 && options.holdout < 1.0)) {
    return invalid(fmt::format("holdout must be a fraction in [0, 1), got {}", options.holdout));
  }
  return ok_status();
}

}  // namespace

Result<HoldoutSplit> parse_holdout_split(std::string_view name) {
  if (name == "last") return HoldoutSplit::kLast;
  if (name == "shuffled") return HoldoutSplit::kShuffled;
  return invalid(fmt::format("unknown holdout split '{}' (last, shuffled)", name));
}

std::string_view holdout_split_name(HoldoutSplit split) {
  return split == HoldoutSplit::kLast ? "last" : "shuffled";
}

Result<TrainedModel> train_mlaas_model(const FeatureTable& table, const TrainingOptions& options,
                                       const EpochFn& progress) {
  MALV_TRY(check_options(options));
  MALV_ASSIGN_OR_RETURN(Columns columns, pick_columns(table, options));
  MALV_ASSIGN_OR_RETURN(nn::MlpSpec spec, model_spec(options, table, columns));
  MALV_ASSIGN_OR_RETURN(Split split, split_rows(table, options));
  const bool regression = options.loss == nn::Loss::kMeanSquaredError;
  const auto inputs = columns.features.size();
  const auto outputs = static_cast<std::size_t>(spec.classes());

  // Raw data of both parts; labels for xent (checked first: a bad label is
  // an input error, whatever the split).
  const std::vector<float> train_x_raw = gather(table, split.train, columns.features);
  const std::vector<float> holdout_x_raw = gather(table, split.holdout, columns.features);
  const std::vector<float> train_y = gather(table, split.train, columns.targets);
  const std::vector<float> holdout_y = gather(table, split.holdout, columns.targets);
  std::vector<std::int32_t> train_labels;
  std::vector<std::int32_t> holdout_labels;
  if (!regression) {
    MALV_ASSIGN_OR_RETURN(train_labels,
                          class_labels(table, split.train, columns.targets[0], spec.classes()));
    MALV_ASSIGN_OR_RETURN(holdout_labels,
                          class_labels(table, split.holdout, columns.targets[0], spec.classes()));
  }

  // Scaling from the training part only.
  const Standardisation x_scaling = Standardisation::fit(train_x_raw, inputs);
  std::optional<Standardisation> y_scaling;
  if (regression) y_scaling = Standardisation::fit(train_y, outputs);
  std::vector<float> train_x = train_x_raw;
  std::vector<float> holdout_x = holdout_x_raw;
  x_scaling.apply(train_x);
  x_scaling.apply(holdout_x);
  std::vector<float> train_y_scaled = train_y;
  if (y_scaling) y_scaling->apply(train_y_scaled);

  MALV_ASSIGN_OR_RETURN(auto device, nn::NativeDevice::create_cpu({.workers = 1}));
  MALV_ASSIGN_OR_RETURN(
      auto model,
      nn::Mlp::create(*device, spec,
                      {.max_batch = options.batch,
                       .seed = options.seed,
                       .optimizer = {.kind = nn::OptimizerKind::kAdam, .lr = options.lr},
                       .loss = options.loss}));

  // The nn model's figures in the targets' own units.
  auto evaluate = [&](std::span<const float> x, std::span<const float> y,
                      std::span<const std::int32_t> labels) -> Result<Metrics> {
    MALV_ASSIGN_OR_RETURN(std::vector<float> out, model->outputs(x));
    if (!regression) return cross_entropy(out, labels, outputs, /*are_logits=*/true);
    y_scaling->restore(out);
    return squared_error(out, y);
  };

  TrainingReport report;
  report.features = names(table, columns.features);
  report.targets = options.targets;
  report.model = spec.to_string();
  report.loss = options.loss;
  report.train_rows = split.train.size();
  report.holdout_rows = split.holdout.size();

  const std::size_t train_rows = split.train.size();
  const auto batch = static_cast<std::size_t>(options.batch);
  std::vector<float> batch_x;
  std::vector<float> batch_y;
  std::vector<std::int32_t> batch_labels;
  for (std::uint64_t epoch = 0; epoch < options.epochs; ++epoch) {
    const std::vector<std::uint32_t> order =
        nn::shuffled_indices(static_cast<std::uint32_t>(train_rows), options.seed, epoch);
    for (std::size_t first = 0; first < train_rows; first += batch) {
      const std::size_t rows = std::min(batch, train_rows - first);
      batch_x.clear();
      batch_y.clear();
      batch_labels.clear();
      for (std::size_t i = first; i < first + rows; ++i) {
        const std::size_t r = order[i];
        batch_x.insert(batch_x.end(), train_x.begin() + static_cast<std::ptrdiff_t>(r * inputs),
                       train_x.begin() + static_cast<std::ptrdiff_t>((r + 1) * inputs));
        if (regression) {
          batch_y.insert(batch_y.end(),
                         train_y_scaled.begin() + static_cast<std::ptrdiff_t>(r * outputs),
                         train_y_scaled.begin() + static_cast<std::ptrdiff_t>((r + 1) * outputs));
        } else {
          batch_labels.push_back(train_labels[r]);
        }
      }
      if (regression) {
        MALV_TRY(model->train_step(batch_x, std::span<const float>(batch_y)));
      } else {
        MALV_TRY(model->train_step(batch_x, std::span<const std::int32_t>(batch_labels)));
      }
    }
    EpochReport epoch_report;
    epoch_report.epoch = epoch + 1;
    epoch_report.epochs = options.epochs;
    MALV_ASSIGN_OR_RETURN(epoch_report.train, evaluate(train_x, train_y, train_labels));
    if (!split.holdout.empty()) {
      MALV_ASSIGN_OR_RETURN(epoch_report.holdout, evaluate(holdout_x, holdout_y, holdout_labels));
    }
    report.epochs.push_back(epoch_report);
    if (progress) progress(epoch_report);
  }
  report.steps = model->steps();

  const ExportOptions scalings{.inputs = &x_scaling, .targets = y_scaling ? &*y_scaling : nullptr};
  MALV_ASSIGN_OR_RETURN(mlaas::Mlp exported, export_mlaas_model(*model, scalings));

  // The final figures are the exported model's, on raw features: what the
  // file will do, not what the nn model did.
  auto final_metrics = [&](const std::vector<float>& x, std::span<const float> y,
                           std::span<const std::int32_t> labels) {
    const std::size_t rows = x.size() / inputs;
    std::vector<float> out(rows * outputs);
    exported.infer_cpu(x.data(), rows, out.data());
    return regression ? squared_error(out, y)
                      : cross_entropy(out, labels, outputs, /*are_logits=*/false);
  };
  report.train = final_metrics(train_x_raw, train_y, train_labels);
  const bool held = !split.holdout.empty();
  if (held) report.holdout = final_metrics(holdout_x_raw, holdout_y, holdout_labels);
  report.baseline =
      regression ? baseline_mse(train_y, held ? holdout_y : train_y, outputs)
                 : baseline_xent(train_labels, held ? holdout_labels : train_labels, outputs);
  return TrainedModel{std::move(exported), std::move(report)};
}

Status save_trained_model(const TrainedModel& trained, const std::string& path) {
  mlaas::SafetensorsFile file = trained.model.to_safetensors();
  file.metadata["features"] = fmt::format("{}", fmt::join(trained.report.features, ","));
  file.metadata["targets"] = fmt::format("{}", fmt::join(trained.report.targets, ","));
  file.metadata["loss"] = std::string(nn::loss_name(trained.report.loss));
  file.metadata["inputs"] = "raw";
  MALV_TRY_CONTEXT(mlaas::write_safetensors(path, file), "writing model " + path);
  return ok_status();
}

}  // namespace malv::train
