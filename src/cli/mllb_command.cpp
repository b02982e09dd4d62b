// `malv mllb train` and `malv mllb eval`: the learned load balancer's model,
// trained on and scored against dumps of Linux's can_migrate_task()
// decisions. The work is train/mllb_dump.h's and train/mllb_model.h's; this
// parses and prints (docs/mllb.md).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "cli/training_flags.h"
#include "cli/training_progress.h"
#include "train/mllb_dump.h"
#include "train/mllb_model.h"

namespace malv::cli {
namespace {

// The agreement with the kernel the MLLB paper (Chen et al., APSys '20)
// reports on its authors' own dumps: a figure to compare with, not ours.
constexpr double kPublishedAccuracy = 0.99;

struct MllbTrainFlags {
  std::string data;
  std::string out;
  std::string reference;
  std::string model = "15-16-1";
  std::uint64_t epochs = 60;
  std::uint64_t batch = 32;
  double lr = 3e-3;
  double holdout = 0.2;
  std::uint64_t seed = 1;
  std::uint64_t folds = 0;
  std::string rows = "all";
  bool json = false;
};

struct MllbEvalFlags {
  std::string data;
  std::string model;
  std::string reference;
  std::string rows = "all";
  bool json = false;
};

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

// --reference if given (it must load), else the default (beside the data,
// else the source tree's) if there is one; none is not an error: the figure
// is then left out.
Result<std::optional<mlaas::Mlp>> reference_model(const std::string& flag, const std::string& data,
                                                  std::string& used) {
  used = flag.empty() ? train::default_mllb_reference_path(data) : flag;
  if (used.empty()) return std::optional<mlaas::Mlp>();
  MALV_ASSIGN_OR_RETURN(mlaas::Mlp reference, train::load_mllb_reference(used));
  return std::optional<mlaas::Mlp>(std::move(reference));
}

nlohmann::json scores_json(const train::MllbScores& s) {
  return {{"rows", s.rows},
          {"positives", s.positives},
          {"predicted_positives", s.predicted_positives},
          {"true_positives", s.true_positives},
          {"accuracy", s.accuracy},
          {"precision", s.precision},
          {"recall", s.recall},
          {"balanced_accuracy", s.balanced_accuracy},
          {"majority_accuracy", s.majority_accuracy},
          {"reference_accuracy",
           s.reference_accuracy ? nlohmann::json(*s.reference_accuracy) : nlohmann::json()}};
}

std::string scores_text(const train::MllbScores& s) {
  std::string text = fmt::format(
      "accuracy {:.4f}  precision {:.4f}  recall {:.4f} ({} of {} moves)  balanced {:.4f}  "
      "majority {:.4f}",
      s.accuracy, s.precision, s.recall, s.true_positives, s.positives, s.balanced_accuracy,
      s.majority_accuracy);
  if (s.reference_accuracy) text += fmt::format("  reference {:.4f}", *s.reference_accuracy);
  return text;
}

std::string describe_dump(const train::MllbDump& dump) {
  std::size_t positives = 0;
  std::size_t running = 0;
  for (const train::MllbSample& s : dump.samples) {
    positives += s.label == 1 ? 1 : 0;
    running += s.migration.running != 0 ? 1 : 0;
  }
  const std::string clock =
      dump.clock_offset_ns
          ? fmt::format("since_ran from delta with a clock offset of {:.6f} s (estimated)",
                        static_cast<double>(*dump.clock_offset_ns) / 1e9)
          : std::string("since_ran = delta (no row has delta < 0)");
  return fmt::format("{}: {} rows, {} labelled 1, {} running; {}", dump.origin, dump.samples.size(),
                     positives, running, clock);
}

// Mean, standard deviation (population) and minimum of a figure over folds.
struct Spread {
  double mean = 0;
  double sd = 0;
  double min = 0;
};
template <typename F>
Spread spread(const std::vector<train::MllbScores>& folds, F figure) {
  Spread s{.min = std::numeric_limits<double>::max()};
  for (const train::MllbScores& f : folds) {
    s.mean += figure(f);
    s.min = std::min(s.min, figure(f));
  }
  s.mean /= static_cast<double>(folds.size());
  for (const train::MllbScores& f : folds) s.sd += (figure(f) - s.mean) * (figure(f) - s.mean);
  s.sd = std::sqrt(s.sd / static_cast<double>(folds.size()));
  return s;
}

nlohmann::json folds_json(const std::vector<train::MllbScores>& folds) {
  nlohmann::json out = {{"folds", folds.size()}};
  auto put = [&](const char* name, auto figure) {
    const Spread s = spread(folds, figure);
    out[name] = {{"mean", s.mean}, {"sd", s.sd}, {"min", s.min}};
  };
  put("accuracy", [](const train::MllbScores& f) { return f.accuracy; });
  put("precision", [](const train::MllbScores& f) { return f.precision; });
  put("recall", [](const train::MllbScores& f) { return f.recall; });
  put("majority_accuracy", [](const train::MllbScores& f) { return f.majority_accuracy; });
  if (!folds.empty() && folds.front().reference_accuracy) {
    put("reference_accuracy",
        [](const train::MllbScores& f) { return f.reference_accuracy.value_or(0); });
  }
  return out;
}

std::string folds_text(const std::vector<train::MllbScores>& folds) {
  auto one = [&](const char* name, auto figure) {
    const Spread s = spread(folds, figure);
    return fmt::format("{} {:.4f} ± {:.4f} (min {:.4f})", name, s.mean, s.sd, s.min);
  };
  std::string text = fmt::format(
      "{}  {}  {}  {}", one("accuracy", [](const train::MllbScores& f) { return f.accuracy; }),
      one("precision", [](const train::MllbScores& f) { return f.precision; }),
      one("recall", [](const train::MllbScores& f) { return f.recall; }),
      one("majority", [](const train::MllbScores& f) { return f.majority_accuracy; }));
  if (!folds.empty() && folds.front().reference_accuracy) {
    text += "  " + one("reference",
                       [](const train::MllbScores& f) { return f.reference_accuracy.value_or(0); });
  }
  return text;
}

Status run_mllb_train(MllbTrainFlags f) {
  if (f.data.empty()) {
    const char* env = std::getenv("MALV_MLLB_DATA");
    if (env == nullptr || env[0] == '\0') {
      return invalid("no data: give the dump (DATA.csv) or set MALV_MLLB_DATA");
    }
    f.data = env;
  }
  const std::filesystem::path out_dir = std::filesystem::absolute(f.out).parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(out_dir, ec)) {  // found out before the work, not after it
    return invalid(
        fmt::format("--out {}: no directory {} to write it in", f.out, out_dir.string()));
  }
  train::MllbTrainingOptions options{.model = f.model,
                                     .epochs = f.epochs,
                                     .batch = static_cast<std::int64_t>(f.batch),
                                     .lr = static_cast<float>(f.lr),
                                     .holdout = f.holdout,
                                     .seed = f.seed};
  MALV_ASSIGN_OR_RETURN(options.rows, train::parse_mllb_rows(f.rows));
  MALV_ASSIGN_OR_RETURN(train::MllbDump dump, train::read_mllb_dump(f.data));
  std::string reference_path;
  MALV_ASSIGN_OR_RETURN(std::optional<mlaas::Mlp> reference,
                        reference_model(f.reference, f.data, reference_path));
  const mlaas::Mlp* ref = reference ? &*reference : nullptr;

  if (!f.json) fmt::print("{}\n", describe_dump(dump));
  const train::EpochFn progress = epoch_printer(f.json);
  MALV_ASSIGN_OR_RETURN(train::MllbTraining t,
                        train::train_mllb_model(dump, options, ref, progress));
  MALV_TRY(train::save_trained_model(t.trained, f.out));

  std::vector<train::MllbScores> folds_all;
  std::vector<train::MllbScores> folds_not_running;
  if (f.folds > 0) {
    MALV_ASSIGN_OR_RETURN(std::vector<train::MllbFold> folds,
                          train::cross_validate_mllb(dump, options, f.folds, ref));
    for (const train::MllbFold& fold : folds) {
      folds_all.push_back(fold.all);
      if (fold.not_running) folds_not_running.push_back(*fold.not_running);
    }
  }

  const train::TrainingReport& r = t.trained.report;
  if (f.json) {
    nlohmann::json out = {
        {"data", f.data},
        {"out", f.out},
        {"reference", reference_path.empty() ? nlohmann::json() : nlohmann::json(reference_path)},
        {"rows", f.rows},
        {"model", r.model},
        {"features", r.features},
        {"target", r.targets.front()},
        {"threshold", MALV_MLLB_THRESHOLD},
        {"seed", f.seed},
        {"holdout", f.holdout},
        {"train_rows", t.train_rows.size()},
        {"holdout_rows", t.holdout_rows.size()},
        {"epochs", r.epochs.size()},
        {"steps", r.steps},
        {"training_seconds", t.seconds},
        {"clock_offset_ns",
         dump.clock_offset_ns ? nlohmann::json(*dump.clock_offset_ns) : nlohmann::json()},
        {"train", scores_json(t.train_scores)},
        {"holdout_all", t.holdout_all ? scores_json(*t.holdout_all) : nlohmann::json()},
        {"holdout_not_running",
         t.holdout_not_running ? scores_json(*t.holdout_not_running) : nlohmann::json()},
        {"published_accuracy", kPublishedAccuracy}};
    if (!folds_all.empty()) {
      out["cross_validation"] = {{"all", folds_json(folds_all)}};
      if (!folds_not_running.empty()) {
        out["cross_validation"]["not_running"] = folds_json(folds_not_running);
      }
    }
    fmt::print("{}\n", out.dump(2));
    return ok_status();
  }
  fmt::print("model {} (mse towards 0/1; migrate when the output > {}), features {}\n", r.model,
             MALV_MLLB_THRESHOLD, fmt::join(r.features, ","));
  fmt::print("trained on {} rows ({}), {} steps in {:.2f} s\n", t.train_rows.size(), f.rows,
             r.steps, t.seconds);
  fmt::print("training rows ({}): {}\n", t.train_scores.rows, scores_text(t.train_scores));
  if (t.holdout_all) {
    fmt::print("held-out, all ({} rows, stratified, seed {}): {}\n", t.holdout_all->rows, f.seed,
               scores_text(*t.holdout_all));
  } else {
    fmt::print("nothing held out (--holdout 0)\n");
  }
  if (t.holdout_not_running && options.rows == train::MllbRows::kAll) {
    fmt::print("held-out, not running ({} rows): {}\n", t.holdout_not_running->rows,
               scores_text(*t.holdout_not_running));
  }
  if (!folds_all.empty()) {
    fmt::print("{}-fold cross-validation, all rows: {}\n", f.folds, folds_text(folds_all));
    if (!folds_not_running.empty() && options.rows == train::MllbRows::kAll) {
      fmt::print("{}-fold cross-validation, not running: {}\n", f.folds,
                 folds_text(folds_not_running));
    }
  }
  if (reference_path.empty()) {
    fmt::print("no reference (no mllb_reference_weights.json beside the data; give --reference)\n");
  }
  fmt::print(
      "published: the MLLB paper reports {:.2f} agreement with the kernel on its "
      "authors' own dumps (another kernel and machine)\n",
      kPublishedAccuracy);
  fmt::print("wrote {}\n", f.out);
  return ok_status();
}

Status run_mllb_eval(const MllbEvalFlags& f) {
  MALV_ASSIGN_OR_RETURN(train::MllbRows rows, train::parse_mllb_rows(f.rows));
  const std::string model_path = f.model.empty() ? train::default_mllb_model_path() : f.model;
  std::error_code ec;
  if (f.model.empty() && !std::filesystem::exists(model_path, ec)) {
    return invalid(
        fmt::format("no shipped model at {} (build the policy modules, set "
                    "MALV_POLICY_DIR, or give --model)",
                    model_path));
  }
  MALV_ASSIGN_OR_RETURN(mlaas::Mlp model, train::load_mllb_model(model_path));
  MALV_ASSIGN_OR_RETURN(train::MllbDump dump, train::read_mllb_dump(f.data));
  std::string reference_path;
  MALV_ASSIGN_OR_RETURN(std::optional<mlaas::Mlp> reference,
                        reference_model(f.reference, f.data, reference_path));
  const std::vector<std::size_t> scored = train::select_mllb_rows(dump, rows);
  MALV_ASSIGN_OR_RETURN(
      train::MllbScores s,
      train::score_mllb_model(model, dump, scored, reference ? &*reference : nullptr));
  const char* which = rows == train::MllbRows::kAll
                          ? "every row"
                          : "the rows whose task is not running (p_running == 0)";
  if (f.json) {
    nlohmann::json out = scores_json(s);
    out["data"] = f.data;
    out["model"] = model_path;
    out["reference"] = reference_path.empty() ? nlohmann::json() : nlohmann::json(reference_path);
    out["scored"] = train::mllb_rows_name(rows);
    out["scored_rows"] = which;
    out["threshold"] = MALV_MLLB_THRESHOLD;
    fmt::print("{}\n", out.dump(2));
    return ok_status();
  }
  fmt::print("{}\n", describe_dump(dump));
  fmt::print("model {}; scored: {} ({} rows, {} labelled 1)\n", model_path, which, s.rows,
             s.positives);
  fmt::print("{}\n", scores_text(s));
  if (reference_path.empty()) {
    fmt::print("no reference (no mllb_reference_weights.json beside the data; give --reference)\n");
  } else {
    fmt::print("reference: LAKE's MLP from {} on the same rows\n", reference_path);
  }
  return ok_status();
}

void register_mllb_train(CLI::App& mllb, int& exit_code) {
  auto f = std::make_shared<MllbTrainFlags>();
  CLI::App* sub = mllb.add_subcommand(
      "train",
      "Train the learned load balancer's model on a dump of Linux's can_migrate_task() "
      "decisions; writes an MLaaS model file");
  sub->add_option("data", f->data, "The dump (CSV of MLLB's 30 columns); default: $MALV_MLLB_DATA");
  sub->add_option("--out", f->out, "Model file to write (.safetensors)")->required();
  sub->add_option("--model", f->model,
                  "Layer widths, inputs first (15 inputs, 1 output; hidden layers relu)")
      ->capture_default_str();
  add_optimiser_flags(*sub, f->epochs, f->batch, f->lr);
  sub->add_option("--holdout", f->holdout,
                  "Fraction of rows held out, drawn from each label apart (0: none)")
      ->capture_default_str()
      ->check(finite_in(0, 0.9));
  sub->add_option("--seed", f->seed, "The split, initial weights, example order")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_option("--rows", f->rows,
                  "Rows trained on and held out: all, or not-running (p_running == 0)")
      ->capture_default_str()
      ->check(CLI::IsMember({"all", "not-running"}));
  sub->add_option("--folds", f->folds,
                  "Also run K-fold cross-validation (stratified, K models) and report the "
                  "spread (0: off)")
      ->capture_default_str()
      ->check(whole_number_in(0, 100));
  sub->add_option("--reference", f->reference,
                  "LAKE's reference weights (JSON); default: mllb_reference_weights.json beside "
                  "the data, if there");
  sub->add_flag("--json", f->json, "Print one JSON report at the end instead of text");
  sub->footer(
      "Inputs: include/malv/mllb_features.h of each row; output: the kernel's answer (0/1), "
      "mean squared error; migrate when the output > 0.5. Figures on the held-out rows: "
      "accuracy, precision, recall of 'migrate', the majority answer's accuracy, LAKE's "
      "reference MLP's (docs/mllb.md).\n\n"
      "Example:\n"
      "  malv mllb train ../shared/data/mllb/raw_tag1.csv --out malv_mllb.safetensors --folds 5\n"
      "  malv mllb eval other_boot.csv --model malv_mllb.safetensors");
  sub->callback([f, &exit_code] {
    Status done = run_mllb_train(*f);
    if (!done.ok()) fmt::print(stderr, "malv mllb train: {}\n", done.error().to_string());
    exit_code = done.ok() ? 0 : 1;
  });
}

void register_mllb_eval(CLI::App& mllb, int& exit_code) {
  auto f = std::make_shared<MllbEvalFlags>();
  CLI::App* sub = mllb.add_subcommand(
      "eval", "Score an MLLB model against a dump of Linux's can_migrate_task() decisions");
  sub->add_option("data", f->data, "The dump (CSV of MLLB's 30 columns)")->required();
  sub->add_option("--model", f->model,
                  "Model file (default: the shipped malv_mllb.safetensors in the policy "
                  "modules' directory)");
  sub->add_option("--reference", f->reference,
                  "LAKE's reference weights (JSON); default: mllb_reference_weights.json beside "
                  "the data, if there");
  sub->add_option("--rows", f->rows,
                  "Rows scored: all, or not-running (p_running == 0, as LAKE scores)")
      ->capture_default_str()
      ->check(CLI::IsMember({"all", "not-running"}));
  sub->add_flag("--json", f->json, "Print one JSON object instead of text");
  sub->footer(
      "Prints, for the rows scored: rows, accuracy, precision and recall of 'migrate', "
      "balanced accuracy, majority_accuracy (always answering the commoner label of those "
      "rows), reference_accuracy (LAKE's MLP on the same rows; null without its weights). "
      "The model runs on mlaas::Mlp, the inference service's code (docs/mllb.md).\n\n"
      "Example:\n"
      "  malv mllb eval dump.csv --rows not-running --json");
  sub->callback([f, &exit_code] {
    Status done = run_mllb_eval(*f);
    if (!done.ok()) fmt::print(stderr, "malv mllb eval: {}\n", done.error().to_string());
    exit_code = done.ok() ? 0 : 1;
  });
}

}  // namespace

void register_mllb(CLI::App& app, int& exit_code) {
  CLI::App* mllb =
      app.add_subcommand("mllb", "The learned load balancer (MLLB): train and evaluate its model");
  mllb->require_subcommand(1);
  register_mllb_train(*mllb, exit_code);
  register_mllb_eval(*mllb, exit_code);
}

}  // namespace malv::cli
