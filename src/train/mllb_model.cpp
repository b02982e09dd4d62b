// Training and scoring the learned load balancer's model (see mllb_model.h).
#include "train/mllb_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "mlaas/policy_dir.h"
#include "mlaas/safetensors.h"
#include "nn/dataset.h"

#if !defined(MALV_MLLB_SOURCE_MODEL) || !defined(MALV_MLLB_SOURCE_REFERENCE)
#error \
    "MALV_MLLB_SOURCE_MODEL and MALV_MLLB_SOURCE_REFERENCE must be defined by src/train/CMakeLists.txt"
#endif

namespace malv::train {

const std::array<std::string_view, MALV_MLLB_FEATURE_COUNT> kMllbFeatureNames = {
    "running",          "never_ran",      "cache_hot",       "log_since_ran_us", "dst_idle",
    "dst_not_idle",     "dst_newly_idle", "same_node",       "prefer_src",       "prefer_dst",
    "leaves_preferred", "to_preferred",   "has_numa_faults", "fault_share",      "extra_fails"};

namespace {

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

bool has_label(const MllbDump& dump, std::size_t row, int label) {
  return dump.samples[row].label == label;
}

// Each label's rows in a seeded order (positives and negatives apart), so a
// split or a fold takes the file's share of each.
std::array<std::vector<std::size_t>, 2> shuffled_by_label(const MllbDump& dump,
                                                          std::span<const std::size_t> rows,
                                                          std::uint64_t seed) {
  std::array<std::vector<std::size_t>, 2> by_label;
  for (std::size_t r : rows) by_label[dump.samples[r].label == 1 ? 1 : 0].push_back(r);
  for (std::size_t label = 0; label < 2; ++label) {
    std::vector<std::size_t>& part = by_label[label];
    const std::vector<std::uint32_t> order = nn::shuffled_indices(
        static_cast<std::uint32_t>(part.size()), nn::derive_seed(seed, 0x6d6c6c62 + label), 0);
    std::vector<std::size_t> shuffled;
    shuffled.reserve(part.size());
    for (std::uint32_t i : order) shuffled.push_back(part[i]);
    part = std::move(shuffled);
  }
  return by_label;
}

// The training path's table: the features of the training rows, then those
// of the held-out rows, and the label.
FeatureTable training_table(const MllbDump& dump, std::span<const std::size_t> train,
                            std::span<const std::size_t> held) {
  FeatureTable table;
  table.origin = dump.origin;
  for (std::string_view name : kMllbFeatureNames) table.columns.emplace_back(name);
  table.columns.emplace_back(kMllbTargetName);
  for (std::span<const std::size_t> part : {train, held}) {
    for (std::size_t r : part) {
      float in[MALV_MLLB_FEATURE_COUNT];
      malv_mllb_features(&dump.samples[r].migration, in);
      table.values.insert(table.values.end(), std::begin(in), std::end(in));
      table.values.push_back(static_cast<float>(dump.samples[r].label));
      table.lines.push_back(dump.samples[r].line);
    }
  }
  return table;
}

Result<void> check_options(const MllbTrainingOptions& options) {
  MALV_ASSIGN_OR_RETURN(nn::MlpSpec spec, nn::MlpSpec::parse(options.model.starts_with("mlp:")
                                                                 ? options.model
                                                                 : "mlp:" + options.model));
  if (spec.inputs() != MALV_MLLB_FEATURE_COUNT || spec.classes() != 1) {
    return invalid(
        fmt::format("model {} has {} inputs and {} outputs; an MLLB model takes the {} features of "
                    "malv/mllb_features.h ({}) and has 1 output",
                    options.model, spec.inputs(), spec.classes(), MALV_MLLB_FEATURE_COUNT,
                    fmt::join(kMllbFeatureNames, ", ")));
  }
  return ok_status();
}

TrainingOptions path_options(const MllbTrainingOptions& options, std::size_t train,
                             std::size_t held) {
  return TrainingOptions{
      .targets = {std::string(kMllbTargetName)},
      .features = {},
      .model = options.model,
      .loss = nn::Loss::kMeanSquaredError,
      .epochs = options.epochs,
      .batch = options.batch,
      .lr = options.lr,
      // The held-out rows are the table's last `held`: exactly, as
      // llround(holdout * rows) == held.
      .holdout = held == 0 ? 0.0 : static_cast<double>(held) / static_cast<double>(train + held),
      .split = HoldoutSplit::kLast,
      .seed = options.seed};
}

std::vector<std::size_t> not_running(const MllbDump& dump, std::span<const std::size_t> rows) {
  std::vector<std::size_t> out;
  for (std::size_t r : rows) {
    if (dump.samples[r].migration.running == 0) out.push_back(r);
  }
  return out;
}

}  // namespace

Result<MllbRows> parse_mllb_rows(std::string_view name) {
  if (name == "all") return MllbRows::kAll;
  if (name == "not-running") return MllbRows::kNotRunning;
  return invalid(fmt::format("unknown rows '{}' (all, not-running)", name));
}

std::string_view mllb_rows_name(MllbRows rows) {
  return rows == MllbRows::kAll ? "all" : "not-running";
}

std::vector<std::size_t> select_mllb_rows(const MllbDump& dump, MllbRows rows) {
  std::vector<std::size_t> out;
  for (std::size_t r = 0; r < dump.samples.size(); ++r) {
    if (rows == MllbRows::kAll || dump.samples[r].migration.running == 0) out.push_back(r);
  }
  return out;
}

std::vector<float> mllb_feature_matrix(const MllbDump& dump, std::span<const std::size_t> rows) {
  std::vector<float> x(rows.size() * MALV_MLLB_FEATURE_COUNT);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    malv_mllb_features(&dump.samples[rows[i]].migration, &x[i * MALV_MLLB_FEATURE_COUNT]);
  }
  return x;
}

Result<MllbScores> score_mllb_model(const mlaas::Mlp& model, const MllbDump& dump,
                                    std::span<const std::size_t> rows,
                                    const mlaas::Mlp* reference) {
  if (model.input_dim() != MALV_MLLB_FEATURE_COUNT || model.output_dim() != 1) {
    return invalid(
        fmt::format("the model takes {} inputs and gives {} outputs; an MLLB model "
                    "takes {} and gives 1",
                    model.input_dim(), model.output_dim(), MALV_MLLB_FEATURE_COUNT));
  }
  if (reference != nullptr &&
      (reference->input_dim() != kMllbReferenceInputs || reference->output_dim() != 1)) {
    return invalid(
        fmt::format("the reference model takes {} inputs and gives {} outputs; LAKE's "
                    "takes {} and gives 1",
                    reference->input_dim(), reference->output_dim(), kMllbReferenceInputs));
  }
  if (rows.empty()) return invalid(fmt::format("{}: no rows to score", dump.origin));
  const std::vector<float> x = mllb_feature_matrix(dump, rows);
  std::vector<float> out(rows.size());
  model.infer_cpu(x.data(), rows.size(), out.data());

  MllbScores s;
  s.rows = rows.size();
  std::size_t true_negatives = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const bool yes = malv_mllb_migrate(out[i]) != 0;
    const bool label = has_label(dump, rows[i], 1);
    s.positives += label ? 1 : 0;
    s.predicted_positives += yes ? 1 : 0;
    s.true_positives += yes && label ? 1 : 0;
    true_negatives += !yes && !label ? 1 : 0;
  }
  const auto n = static_cast<double>(s.rows);
  const std::size_t negatives = s.rows - s.positives;
  s.correct = s.true_positives + true_negatives;
  s.accuracy = static_cast<double>(s.correct) / n;
  s.precision = s.predicted_positives == 0 ? 0.0
                                           : static_cast<double>(s.true_positives) /
                                                 static_cast<double>(s.predicted_positives);
  s.recall = s.positives == 0
                 ? 0.0
                 : static_cast<double>(s.true_positives) / static_cast<double>(s.positives);
  const double specificity =
      negatives == 0 ? 0.0 : static_cast<double>(true_negatives) / static_cast<double>(negatives);
  s.balanced_accuracy = s.positives == 0 ? specificity
                        : negatives == 0 ? s.recall
                                         : (s.recall + specificity) / 2;
  s.majority_accuracy = static_cast<double>(std::max(s.positives, negatives)) / n;

  if (reference != nullptr) {
    std::vector<float> ref_x;
    ref_x.reserve(rows.size() * kMllbReferenceInputs);
    for (std::size_t r : rows) {
      const auto in = mllb_reference_inputs(dump.samples[r].raw);
      ref_x.insert(ref_x.end(), in.begin(), in.end());
    }
    std::vector<float> ref_out(rows.size());
    reference->infer_cpu(ref_x.data(), rows.size(), ref_out.data());
    std::size_t right = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      right += (ref_out[i] > 0.5f) == has_label(dump, rows[i], 1) ? 1 : 0;
    }
    s.reference_accuracy = static_cast<double>(right) / n;
  }
  return s;
}

Result<mlaas::Mlp> load_mllb_model(const std::string& path) {
  Result<mlaas::SafetensorsFile> file = mlaas::read_safetensors(path);
  if (!file.ok()) return std::move(file).error().with_context("reading MLLB model " + path);
  MALV_ASSIGN_OR_RETURN(mlaas::Mlp model, mlaas::Mlp::from_safetensors(*file, path));
  if (model.input_dim() != MALV_MLLB_FEATURE_COUNT || model.output_dim() != 1) {
    return invalid(
        fmt::format("{}: the model takes {} inputs and gives {} outputs; an MLLB model "
                    "takes the {} of malv/mllb_features.h and gives 1",
                    path, model.input_dim(), model.output_dim(), MALV_MLLB_FEATURE_COUNT));
  }
  // A file that names its features (made by the training path) must name
  // these, in this order: 15 other inputs would be read as ours.
  if (auto features = file->metadata.find("features"); features != file->metadata.end()) {
    const std::string ours = fmt::format("{}", fmt::join(kMllbFeatureNames, ","));
    if (features->second != ours) {
      return invalid(fmt::format("{}: the model's features are {}, not malv/mllb_features.h's {}",
                                 path, features->second, ours));
    }
  }
  return model;
}

Result<mlaas::Mlp> parse_mllb_reference(std::string_view json, std::string_view origin) {
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return invalid(fmt::format("{}: not a JSON object", origin));
  }
  constexpr std::size_t kHidden = 10;
  auto read = [&](const char* key, std::size_t count) -> Result<std::vector<float>> {
    if (!doc.contains(key)) return invalid(fmt::format("{}: no \"{}\"", origin, key));
    std::vector<float> flat;
    std::function<bool(const nlohmann::json&)> walk = [&](const nlohmann::json& v) {
      if (v.is_number()) {
        flat.push_back(v.get<float>());
        return true;
      }
      if (!v.is_array()) return false;
      for (const nlohmann::json& e : v) {
        if (!walk(e)) return false;
      }
      return true;
    };
    if (!walk(doc[key]) || flat.size() != count) {
      return invalid(fmt::format("{}: \"{}\" must hold {} numbers", origin, key, count));
    }
    return flat;
  };
  MALV_ASSIGN_OR_RETURN(std::vector<float> w1, read("w1", kMllbReferenceInputs * kHidden));
  MALV_ASSIGN_OR_RETURN(std::vector<float> b1, read("b1", kHidden));
  MALV_ASSIGN_OR_RETURN(std::vector<float> w2, read("w2", kHidden));
  MALV_ASSIGN_OR_RETURN(std::vector<float> b2, read("b2", 1));
  mlaas::DenseLayer hidden{.in = kMllbReferenceInputs,
                           .out = kHidden,
                           .weight = std::vector<float>(kHidden * kMllbReferenceInputs),
                           .bias = b1,
                           .activation = mlaas::Activation::kRelu};
  for (std::size_t i = 0; i < kMllbReferenceInputs; ++i) {  // w1[i][j]: input i into unit j
    for (std::size_t j = 0; j < kHidden; ++j) {
      hidden.weight[j * kMllbReferenceInputs + i] = w1[i * kHidden + j];
    }
  }
  mlaas::DenseLayer output{.in = kHidden,
                           .out = 1,
                           .weight = w2,
                           .bias = b2,
                           .activation = mlaas::Activation::kIdentity};
  return mlaas::Mlp::create({std::move(hidden), std::move(output)});
}

Result<mlaas::Mlp> load_mllb_reference(const std::string& path) {
  Result<std::vector<std::byte>> bytes = read_file(path);
  if (!bytes.ok()) return std::move(bytes).error().with_context("reading reference " + path);
  return parse_mllb_reference(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), path);
}

namespace {

bool is_file(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::is_regular_file(path, ec);
}

}  // namespace

std::string default_mllb_model_path() {
  const std::string installed = mlaas::policy_dir() + "/malv_mllb.safetensors";
  if (!is_file(installed) && is_file(MALV_MLLB_SOURCE_MODEL)) return MALV_MLLB_SOURCE_MODEL;
  return installed;
}

std::string default_mllb_reference_path(const std::string& data_path) {
  const std::string beside =
      (std::filesystem::path(data_path).parent_path() / "mllb_reference_weights.json").string();
  if (is_file(beside)) return beside;
  if (is_file(MALV_MLLB_SOURCE_REFERENCE)) return MALV_MLLB_SOURCE_REFERENCE;
  return {};
}

Result<MllbTraining> train_mllb_model(const MllbDump& dump, const MllbTrainingOptions& options,
                                      const mlaas::Mlp* reference, const EpochFn& progress) {
  MALV_TRY(check_options(options));
  if (!(options.holdout >= 0.0 && options.holdout < 1.0)) {
    return invalid(fmt::format("holdout must be a fraction in [0, 1), got {}", options.holdout));
  }
  const std::vector<std::size_t> rows = select_mllb_rows(dump, options.rows);
  if (rows.empty()) {
    return invalid(
        fmt::format("{} has no rows of kind {}", dump.origin, mllb_rows_name(options.rows)));
  }
  std::vector<std::size_t> train_rows;
  std::vector<std::size_t> holdout_rows;
  const std::array<std::vector<std::size_t>, 2> by_label =
      shuffled_by_label(dump, rows, options.seed);
  for (const std::vector<std::size_t>& part : by_label) {
    const auto held =
        static_cast<std::size_t>(std::llround(options.holdout * static_cast<double>(part.size())));
    holdout_rows.insert(holdout_rows.end(), part.begin(),
                        part.begin() + static_cast<std::ptrdiff_t>(held));
    train_rows.insert(train_rows.end(), part.begin() + static_cast<std::ptrdiff_t>(held),
                      part.end());
  }
  if (train_rows.empty()) {
    return invalid(fmt::format("{}: holding out {} of {} rows leaves none to train on", dump.origin,
                               holdout_rows.size(), rows.size()));
  }
  std::sort(train_rows.begin(), train_rows.end());
  std::sort(holdout_rows.begin(), holdout_rows.end());

  const FeatureTable table = training_table(dump, train_rows, holdout_rows);
  const auto start = std::chrono::steady_clock::now();
  MALV_ASSIGN_OR_RETURN(
      TrainedModel trained,
      train_mlaas_model(table, path_options(options, train_rows.size(), holdout_rows.size()),
                        progress));
  MllbTraining t{.trained = std::move(trained),
                 .train_rows = std::move(train_rows),
                 .holdout_rows = std::move(holdout_rows)};
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  MALV_ASSIGN_OR_RETURN(t.train_scores,
                        score_mllb_model(t.trained.model, dump, t.train_rows, reference));
  if (!t.holdout_rows.empty()) {
    MALV_ASSIGN_OR_RETURN(t.holdout_all,
                          score_mllb_model(t.trained.model, dump, t.holdout_rows, reference));
    const std::vector<std::size_t> idle = not_running(dump, t.holdout_rows);
    if (!idle.empty()) {
      MALV_ASSIGN_OR_RETURN(t.holdout_not_running,
                            score_mllb_model(t.trained.model, dump, idle, reference));
    }
  }
  return t;
}

Result<std::vector<MllbFold>> cross_validate_mllb(const MllbDump& dump,
                                                  const MllbTrainingOptions& options,
                                                  std::size_t folds, const mlaas::Mlp* reference) {
  MALV_TRY(check_options(options));
  const std::vector<std::size_t> rows = select_mllb_rows(dump, options.rows);
  if (folds < 2 || folds > rows.size()) {
    return invalid(fmt::format("{} folds of {} rows: folds must be 2 to the number of rows", folds,
                               rows.size()));
  }
  std::vector<std::vector<std::size_t>> parts(folds);
  std::size_t next = 0;  // the labels dealt one after the other, round-robin
  for (const std::vector<std::size_t>& label : shuffled_by_label(dump, rows, options.seed)) {
    for (std::size_t r : label) parts[next++ % folds].push_back(r);
  }
  std::vector<MllbFold> out;
  for (std::size_t k = 0; k < folds; ++k) {
    std::vector<std::size_t> train;
    for (std::size_t j = 0; j < folds; ++j) {
      if (j != k) train.insert(train.end(), parts[j].begin(), parts[j].end());
    }
    std::sort(train.begin(), train.end());
    std::vector<std::size_t> held = parts[k];
    std::sort(held.begin(), held.end());
    const FeatureTable table = training_table(dump, train, {});
    MALV_ASSIGN_OR_RETURN(TrainedModel trained,
                          train_mlaas_model(table, path_options(options, train.size(), 0)));
    MllbFold fold;
    MALV_ASSIGN_OR_RETURN(fold.all, score_mllb_model(trained.model, dump, held, reference));
    const std::vector<std::size_t> idle = not_running(dump, held);
    if (!idle.empty()) {
      MALV_ASSIGN_OR_RETURN(fold.not_running,
                            score_mllb_model(trained.model, dump, idle, reference));
    }
    out.push_back(std::move(fold));
  }
  return out;
}

}  // namespace malv::train
