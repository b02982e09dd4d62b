// `malv mlaas train`: trains a small MLP on recorded features (CSV) and
// writes it as an MLaaS model file. The work is train/model_training.h's;
// this parses and prints (docs/training.md).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "cli/training_flags.h"
#include "train/feature_table.h"
#include "train/model_training.h"

namespace malv::cli {
namespace {

struct TrainFlags {
  std::string data;
  std::vector<std::string> targets;
  std::vector<std::string> features;
  std::string model;
  std::string out;
  std::uint64_t epochs = 20;
  std::uint64_t batch = 64;
  double lr = 1e-3;
  double holdout = 0.2;
  std::string split = "last";
  std::uint64_t seed = 1;
  std::string loss = "mse";
  bool json = false;
};

nlohmann::json metrics_json(const train::Metrics& m) {
  nlohmann::json out = {{"loss", m.loss}};
  if (m.accuracy) out["accuracy"] = *m.accuracy;
  return out;
}

// "mse 0.0123" or "xent 0.081 accuracy 0.974".
std::string metrics_text(nn::Loss loss, const train::Metrics& m) {
  std::string text = fmt::format("{} {:.6g}", nn::loss_name(loss), m.loss);
  if (m.accuracy) text += fmt::format(" accuracy {:.4f}", *m.accuracy);
  return text;
}

void print_json(const TrainFlags& f, const train::TrainingReport& r) {
  nlohmann::json epochs = nlohmann::json::array();
  for (const train::EpochReport& e : r.epochs) {
    epochs.push_back({{"epoch", e.epoch},
                      {"train", metrics_json(e.train)},
                      {"holdout", e.holdout ? metrics_json(*e.holdout) : nlohmann::json()}});
  }
  const nlohmann::json out = {
      {"data", f.data},
      {"out", f.out},
      {"model", r.model},
      {"loss", nn::loss_name(r.loss)},
      {"features", r.features},
      {"targets", r.targets},
      {"train_rows", r.train_rows},
      {"holdout_rows", r.holdout_rows},
      {"split", f.split},
      {"steps", r.steps},
      {"epochs", epochs},
      {"train", metrics_json(r.train)},
      {"holdout", r.holdout ? metrics_json(*r.holdout) : nlohmann::json()},
      {"baseline", metrics_json(r.baseline)},
      {"baseline_kind", r.loss == nn::Loss::kMeanSquaredError ? "training mean" : "majority class"},
      {"inputs", "raw"}};
  fmt::print("{}\n", out.dump(2));
}

Status run_train(const TrainFlags& f) {
  train::TrainingOptions options;
  options.targets = f.targets;
  options.features = f.features;
  options.model = f.model;
  MALV_ASSIGN_OR_RETURN(options.loss, nn::parse_loss(f.loss));
  options.epochs = f.epochs;
  options.batch = static_cast<std::int64_t>(f.batch);
  options.lr = static_cast<float>(f.lr);
  options.holdout = f.holdout;
  MALV_ASSIGN_OR_RETURN(options.split, train::parse_holdout_split(f.split));
  options.seed = f.seed;

  // Found out before training rather than after it.
  const std::filesystem::path out_dir = std::filesystem::absolute(f.out).parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(out_dir, ec)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("--out {}: no directory {} to write it in", f.out, out_dir.string()));
  }
  MALV_ASSIGN_OR_RETURN(train::FeatureTable table, train::read_feature_csv(f.data));
  const nn::Loss loss = options.loss;
  train::EpochFn progress;
  if (!f.json) {
    progress = [loss](const train::EpochReport& e) {
      std::string line =
          fmt::format("epoch {:>3}/{}  train {}", e.epoch, e.epochs, metrics_text(loss, e.train));
      if (e.holdout) line += fmt::format("  held-out {}", metrics_text(loss, *e.holdout));
      fmt::print("{}\n", line);
      std::fflush(stdout);
    };
    fmt::print("{}: {} rows, columns {}\n", f.data, table.rows(), fmt::join(table.columns, ", "));
  }
  MALV_ASSIGN_OR_RETURN(train::TrainedModel trained,
                        train::train_mlaas_model(table, options, progress));
  MALV_TRY(train::save_trained_model(trained, f.out));

  const train::TrainingReport& r = trained.report;
  if (f.json) {
    print_json(f, r);
    return ok_status();
  }
  const bool mse = r.loss == nn::Loss::kMeanSquaredError;
  fmt::print("model {} ({} loss), features {} -> targets {}\n", r.model, nn::loss_name(r.loss),
             fmt::join(r.features, ","), fmt::join(r.targets, ","));
  fmt::print("trained on {} rows, {} steps; train {}\n", r.train_rows, r.steps,
             metrics_text(r.loss, r.train));
  const char* baseline = mse ? "the training mean" : "the majority class";
  if (r.holdout) {
    fmt::print("held-out ({} rows, {}): {}\n", r.holdout_rows, f.split,
               metrics_text(r.loss, *r.holdout));
    fmt::print("baseline ({}) on the held-out rows: {}\n", baseline,
               metrics_text(r.loss, r.baseline));
  } else {
    fmt::print("nothing held out (--holdout 0); baseline ({}) on the training rows: {}\n", baseline,
               metrics_text(r.loss, r.baseline));
  }
  fmt::print("wrote {} (takes raw features; standardisation folded into its weights)\n", f.out);
  return ok_status();
}

void register_train(CLI::App& mlaas, int& exit_code) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* sub = mlaas.add_subcommand(
      "train",
      "Train a small MLP on recorded features (CSV) and write it as an MLaaS model file "
      "(.safetensors)");
  sub->add_option("--data", f->data, "Features: a CSV file with a header line of column names")
      ->required();
  sub->add_option("--target", f->targets,
                  "Target column(s), comma-separated: one per output (mse), the class (xent)")
      ->required()
      ->delimiter(',');
  sub->add_option("--features", f->features,
                  "Input columns, comma-separated, in this order (default: every column that is "
                  "not a target, in file order)")
      ->delimiter(',');
  sub->add_option("--model", f->model, "Layer widths, inputs first: 8-32-32-1 (hidden layers relu)")
      ->required();
  sub->add_option("--out", f->out, "Model file to write (.safetensors)")->required();
  add_optimiser_flags(*sub, f->epochs, f->batch, f->lr);
  sub->add_option("--holdout", f->holdout, "Fraction of rows held out for evaluation (0: none)")
      ->capture_default_str()
      ->check(finite_in(0, 0.99));
  sub->add_option("--split", f->split,
                  "Which rows are held out: the last ones (time order) or a seeded shuffle")
      ->capture_default_str()
      ->check(CLI::IsMember({"last", "shuffled"}));
  sub->add_option("--seed", f->seed, "Initial weights, example order, shuffled split")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_option("--loss", f->loss, "mse (regression) or xent (classification)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mse", "xent"}));
  sub->add_flag("--json", f->json, "Print one JSON report at the end instead of text");
  sub->footer(
      "Trains on the CPU. Inputs (and mse targets) are standardised with the training rows' "
      "mean and standard deviation, folded into the model's first and last layers: the file "
      "takes raw features and gives targets in their own units (docs/training.md).\n\n"
      "Example:\n"
      "  malv mlaas train --data evictions.csv --target reuse_distance --model 8-32-32-1 "
      "--out evict.safetensors\n"
      "  malv mlaas train --data jobs.csv --target class --loss xent --model 4-16-3 "
      "--out sjf.safetensors --holdout 0.1 --split shuffled --json");
  sub->callback([f, &exit_code] {
    Status done = run_train(*f);
    if (!done.ok()) fmt::print(stderr, "malv mlaas train: {}\n", done.error().to_string());
    exit_code = done.ok() ? 0 : 1;
  });
}

}  // namespace

void register_mlaas(CLI::App& app, int& exit_code) {
  CLI::App* mlaas = app.add_subcommand("mlaas", "MLaaS models: train one from recorded features");
  mlaas->require_subcommand(1);
  register_train(*mlaas, exit_code);
}

}  // namespace malv::cli
