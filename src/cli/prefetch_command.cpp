// `malv prefetch record` and `malv prefetch train`: the learned prefetch
// policy's model (malv_prefetch_learned), made offline. record runs a
// training VM whose data step varies (bench/mlaas_prefetch.h) with depths
// drawn at random and writes every decision period's outcome; train turns
// records into rows (train/prefetch_data.h), trains through the one training
// path (train/model_training.h) and compares the model's policy with the
// heuristics on held-out periods (docs/training.md).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "bench/mlaas_prefetch.h"
#include "cli/commands.h"
#include "cli/option_checks.h"
#include "cli/training_flags.h"
#include "cli/training_progress.h"
#include "train/model_training.h"
#include "train/prefetch_data.h"

namespace malv::cli {
namespace {

Status check_writable(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: no directory {} to write it in", path, dir.string()));
  }
  return ok_status();
}

struct RecordFlags {
  bench::PrefetchRecordOptions options;
  std::string out;
};

Status run_record(const RecordFlags& f) {
  MALV_TRY(check_writable(f.out));
  bench::PrefetchRecordOptions options = f.options;
  options.progress = [&](std::uint64_t run, const bench::PrefetchRun& r) {
    fmt::print("run {:>3}/{}: {} periods, stall {:.1f} ms, {:.2f} s\n", run + 1, options.runs,
               r.outcomes.size(), static_cast<double>(r.stall_ns) * 1e-6, r.seconds);
    std::fflush(stdout);
  };
  MALV_ASSIGN_OR_RETURN(bench::PrefetchRecording recording, bench::record_prefetch(options));
  MALV_TRY(train::write_prefetch_record(recording.rows, f.out));
  fmt::print("consumer step {:.3f} ms; wrote {} periods of {} runs to {}\n", recording.step_ms,
             recording.rows.size(), options.runs, f.out);
  return ok_status();
}

struct TrainFlags {
  std::vector<std::string> records;
  std::string out;
  std::string model = "9-32-32-1";
  std::uint64_t epochs = 100;
  std::uint64_t batch = 64;
  double lr = 1e-3;
  double holdout = 0.25;
  std::uint64_t seed = 1;
  bool json = false;
};

nlohmann::json estimate_json(const train::PolicyEstimate& e) {
  return {{"stall_steps", e.stall_steps}, {"matched", e.matched}};
}

Status run_train(const TrainFlags& f) {
  MALV_TRY(check_writable(f.out));
  MALV_ASSIGN_OR_RETURN(std::vector<train::PrefetchRecordRow> rows,
                        train::read_prefetch_record(f.records));
  const train::FeatureTable table =
      train::prefetch_training_table(rows, fmt::format("{}", fmt::join(f.records, ",")));
  train::TrainingOptions options{.targets = {train::kPrefetchTargetName},
                                 .model = f.model,
                                 .epochs = f.epochs,
                                 .batch = static_cast<std::int64_t>(f.batch),
                                 .lr = static_cast<float>(f.lr),
                                 .holdout = f.holdout,
                                 .split = train::HoldoutSplit::kLast,
                                 .seed = f.seed};
  const train::EpochFn progress = epoch_printer(f.json, 10);
  MALV_ASSIGN_OR_RETURN(train::TrainedModel trained,
                        train::train_mlaas_model(table, options, progress));
  MALV_TRY(train::save_trained_model(trained, f.out));
  const train::TrainingReport& r = trained.report;
  const std::size_t first = r.holdout ? r.train_rows : 0;
  const train::PrefetchComparison c = train::compare_prefetch_policies(trained.model, rows, first);
  const char* on = r.holdout ? "held-out" : "training";
  if (f.json) {
    const nlohmann::json out = {
        {"records", f.records},
        {"out", f.out},
        {"rows", rows.size()},
        {"model", r.model},
        {"train_rows", r.train_rows},
        {"holdout_rows", r.holdout_rows},
        {"train_mse", r.train.loss},
        {"holdout_mse", r.holdout ? nlohmann::json(r.holdout->loss) : nlohmann::json()},
        {"baseline_mse", r.baseline.loss},
        {"comparison",
         {{"on", on},
          {"periods", c.periods},
          {"recorded_stall_steps", c.recorded},
          {"learned", estimate_json(c.learned)},
          {"adaptive", estimate_json(c.adaptive)},
          {"fixed", estimate_json(c.fixed)}}}};
    fmt::print("{}\n", out.dump(2));
    return ok_status();
  }
  fmt::print("model {} (mse), {} periods: trained on {}, train mse {:.6g}\n", r.model, rows.size(),
             r.train_rows, r.train.loss);
  if (r.holdout) {
    fmt::print("held-out ({} periods, the last): mse {:.6g}\n", r.holdout_rows, r.holdout->loss);
  }
  fmt::print("baseline (the training mean) on the {} periods: mse {:.6g}\n", on, r.baseline.loss);
  fmt::print(
      "stall per period on the {} periods (consumer steps; inverse propensity over the drawn "
      "depths): learned {:.4f} ({} matched), adaptive {:.4f} ({}), fixed {:.4f} ({}); the "
      "random depths recorded {:.4f}\n",
      on, c.learned.stall_steps, c.learned.matched, c.adaptive.stall_steps, c.adaptive.matched,
      c.fixed.stall_steps, c.fixed.matched, c.recorded);
  fmt::print("wrote {}\n", f.out);
  return ok_status();
}

void register_record(CLI::App& prefetch, int& exit_code) {
  auto f = std::make_shared<RecordFlags>();
  CLI::App* sub = prefetch.add_subcommand(
      "record",
      "Record prefetch outcomes for training: a training VM fed by the host's data pipeline, "
      "its data step varying by a seeded schedule, depths drawn at random");
  sub->add_option("--out", f->out, "Record to write (CSV)")->required();
  sub->add_option("--runs", f->options.runs, "Training runs, each on its own schedule")
      ->capture_default_str()
      ->check(whole_number_in(1, 10000));
  sub->add_option("--steps", f->options.steps, "Training steps per run")
      ->capture_default_str()
      ->check(whole_number_in(16, 10'000'000));
  sub->add_option("--seed", f->options.seed, "Schedules and drawn depths")
      ->capture_default_str()
      ->check(whole_number_in(0, std::uint64_t{1} << 40));
  sub->add_option("--backend", f->options.backend, "Accelerator of the in-process host")
      ->capture_default_str();
  sub->add_option("--data-dir", f->options.data_dir, "The host's data directory (fashion-mnist/)")
      ->capture_default_str();
  sub->callback([f, &exit_code] {
    Status done = run_record(*f);
    if (!done.ok()) fmt::print(stderr, "malv prefetch record: {}\n", done.error().message());
    exit_code = done.ok() ? 0 : 1;
  });
}

void register_train(CLI::App& prefetch, int& exit_code) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* sub = prefetch.add_subcommand(
      "train",
      "Train the learned prefetch policy's model on records: the stream's recent stalls, rates "
      "and a depth -> the next period's stall in consumer steps; writes an MLaaS model");
  sub->add_option("record", f->records, "Records written by malv prefetch record")->required();
  sub->add_option("--out", f->out, "Model file to write (.safetensors)")->required();
  sub->add_option("--model", f->model, "Layer widths, inputs first (hidden layers relu)")
      ->capture_default_str();
  add_optimiser_flags(*sub, f->epochs, f->batch, f->lr);
  sub->add_option("--holdout", f->holdout,
                  "Fraction of periods held out (the last ones: the last runs; 0: none)")
      ->capture_default_str()
      ->check(finite_in(0, 0.99));
  sub->add_option("--seed", f->seed, "Initial weights, example order")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_flag("--json", f->json, "Print one JSON report at the end instead of text");
  sub->footer(
      "Inputs are include/malv/prefetch_features.h's, replayed over each run's periods as the "
      "policy sees them. The comparison scores each policy on the held-out periods whose drawn "
      "depth is the one it would have chosen (docs/training.md).\n\n"
      "Example:\n"
      "  malv prefetch record --out prefetch.csv --runs 16\n"
      "  malv prefetch train prefetch.csv --out malv_prefetch_learned.safetensors");
  sub->callback([f, &exit_code] {
    Status done = run_train(*f);
    if (!done.ok()) fmt::print(stderr, "malv prefetch train: {}\n", done.error().message());
    exit_code = done.ok() ? 0 : 1;
  });
}

}  // namespace

void register_prefetch(CLI::App& app, int& exit_code) {
  CLI::App* prefetch = app.add_subcommand(
      "prefetch", "The learned prefetch policy's model: record outcomes, train (offline)");
  prefetch->require_subcommand(1);
  register_record(*prefetch, exit_code);
  register_train(*prefetch, exit_code);
}

}  // namespace malv::cli
