// `malv sjf record` and `malv sjf train`: traces of the vGPU scheduler for
// learned-sjf's model, and the model trained on them (docs/training.md,
// "learned-sjf's model"); also the flags of `malv bench mlaas`'s learned-sjf
// phase. The work is in bench/sjf_workload.h and train/sjf_trace.h with
// train/model_training.h (the one training path); this parses and prints.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bench/sjf_workload.h"
#include "cli/commands.h"
#include "cli/option_checks.h"
#include "cli/training_flags.h"
#include "cli/training_progress.h"
#include "train/model_training.h"
#include "train/sjf_trace.h"

namespace malv::cli {
namespace {

struct RecordFlags {
  std::string out;
  std::string backend = "cpu";
  std::string mix = "varied";
  int streams = 4;
  int bursts = 200;
  std::uint64_t seed = 1;
  bool json = false;
};

struct TrainFlags {
  std::string trace;
  std::string out;
  std::string model = "19-32-32-1";
  std::uint64_t epochs = 60;
  std::uint64_t batch = 64;
  double lr = 3e-3;
  double holdout = 0.2;
  std::uint64_t seed = 1;
  bool json = false;
};

Status check_writable(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: no directory {} to write it in", path, dir.string()));
  }
  return ok_status();
}

Status run_record(const RecordFlags& f) {
  MALV_TRY(check_writable(f.out));
  const bench::SjfMix mix = f.mix == "bench" ? bench::SjfMix::kBench : bench::SjfMix::kVaried;
  MALV_ASSIGN_OR_RETURN(
      bench::SjfRecordReport report,
      bench::record_sjf_trace(
          f.backend, {.mix = mix, .streams = f.streams, .bursts = f.bursts, .seed = f.seed},
          f.out));
  if (f.json) {
    fmt::print("{}\n", nlohmann::json{{"out", f.out},
                                      {"mix", f.mix},
                                      {"streams", f.streams},
                                      {"bursts", f.bursts},
                                      {"seed", f.seed},
                                      {"items", report.figures.items},
                                      {"outcomes", report.outcomes},
                                      {"seconds", report.figures.seconds}}
                           .dump(2));
    return ok_status();
  }
  fmt::print("ran {} items on {} streams of one VM ({} bursts, {} mix) in {:.1f} s\n",
             report.figures.items, f.streams, f.bursts, f.mix, report.figures.seconds);
  fmt::print("wrote {} outcomes (a batch's head item and its measured run time) to {}\n",
             report.outcomes, f.out);
  return ok_status();
}

Status run_train(const TrainFlags& f) {
  MALV_TRY(check_writable(f.out));
  MALV_ASSIGN_OR_RETURN(train::FeatureTable table, train::read_sjf_trace(f.trace));
  train::TrainingOptions options{.targets = {train::kSjfTargetColumn},
                                 .model = f.model,
                                 .epochs = f.epochs,
                                 .batch = static_cast<std::int64_t>(f.batch),
                                 .lr = static_cast<float>(f.lr),
                                 .holdout = f.holdout,
                                 .split = train::HoldoutSplit::kShuffled,
                                 .seed = f.seed};
  const train::EpochFn progress = epoch_printer(f.json, 10);
  MALV_ASSIGN_OR_RETURN(train::TrainedModel trained,
                        train::train_mlaas_model(table, options, progress));
  MALV_ASSIGN_OR_RETURN(trained.model, train::neutralise_constant_inputs(trained.model, table));
  MALV_TRY(train::save_trained_model(trained, f.out));
  const train::TrainingReport& r = trained.report;
  const double model_mse = r.holdout ? r.holdout->loss : r.train.loss;
  // The target is (ln(run_ns) - 12) / 4: a root mean squared error e in it
  // is a typical factor of exp(4 e) on the predicted run time.
  const double factor = std::exp(4.0 * std::sqrt(model_mse));
  const double mean_factor = std::exp(4.0 * std::sqrt(r.baseline.loss));
  if (f.json) {
    fmt::print("{}\n", nlohmann::json{{"trace", f.trace},
                                      {"out", f.out},
                                      {"model", r.model},
                                      {"rows", table.rows()},
                                      {"train_rows", r.train_rows},
                                      {"holdout_rows", r.holdout_rows},
                                      {"train_mse", r.train.loss},
                                      {"holdout_mse", r.holdout ? nlohmann::json(r.holdout->loss)
                                                                : nlohmann::json()},
                                      {"mean_mse", r.baseline.loss},
                                      {"model_over_mean_mse", model_mse / r.baseline.loss},
                                      {"model_run_time_factor", factor},
                                      {"mean_run_time_factor", mean_factor}}
                           .dump(2));
    return ok_status();
  }
  const char* on = r.holdout ? "held-out" : "training";
  fmt::print("model {} on {} rows ({} trained on, {} held out at random)\n", r.model, table.rows(),
             r.train_rows, r.holdout_rows);
  fmt::print(
      "{} rows: mse {:.5f} (run time within a factor of {:.2f}, typically); predicting the "
      "training mean: mse {:.5f} (a factor of {:.2f}); model / mean = {:.3f}\n",
      on, model_mse, factor, r.baseline.loss, mean_factor, model_mse / r.baseline.loss);
  fmt::print("wrote {} (learned-sjf's model: install it as malv_learned_sjf.safetensors)\n", f.out);
  return ok_status();
}

}  // namespace

void add_bench_sjf_flags(CLI::App& sub, bench::MlaasOptions& flags) {
  sub.add_option("--sjf-bursts", flags.sjf_bursts,
                 "learned-sjf vs fifo: bursts per run (cold: no warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  sub.add_option("--sjf-rounds", flags.sjf_rounds,
                 "learned-sjf vs fifo: runs of each, alternating (means over all)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub.add_option("--sjf-streams", flags.sjf_streams, "learned-sjf vs fifo: streams of the VM")
      ->capture_default_str()
      ->check(CLI::Range(2, 32));
  sub.add_flag("--sjf-only", flags.sjf_only, "Run only the learned-sjf vs fifo phase");
}

void register_sjf(CLI::App& app, int& exit_code) {
  CLI::App* sjf = app.add_subcommand(
      "sjf", "learned-sjf's model: record scheduler traces, train the model on them");
  sjf->require_subcommand(1);

  auto r = std::make_shared<RecordFlags>();
  CLI::App* record = sjf->add_subcommand(
      "record",
      "Run a host and one VM whose streams carry short and long work on the CPU backend; write "
      "each scheduler outcome (the head item's observation, the batch's measured run time)");
  record->add_option("--out", r->out, "Trace to write (CSV)")->required();
  record->add_option("--backend", r->backend, "Accelerator: cpu, cuda or auto")
      ->capture_default_str();
  record->add_option("--mix", r->mix, "varied (sizes from wide ranges) or bench (the bench's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"varied", "bench"}));
  record->add_option("--streams", r->streams, "Streams of the VM")
      ->capture_default_str()
      ->check(CLI::Range(1, 32));
  record->add_option("--bursts", r->bursts, "Bursts")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  record->add_option("--seed", r->seed, "Seed of the bursts")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  record->add_flag("--json", r->json, "Print one JSON report instead of text");
  record->callback([r, &exit_code] {
    Status done = run_record(*r);
    if (!done.ok()) fmt::print(stderr, "malv sjf record: {}\n", done.error().message());
    exit_code = done.ok() ? 0 : 1;
  });

  auto t = std::make_shared<TrainFlags>();
  CLI::App* train = sjf->add_subcommand(
      "train",
      "Train learned-sjf's model on a recorded trace: include/malv/sjf_features.h's inputs -> "
      "(ln(run_ns) - 12) / 4; holds out a part and compares with predicting the mean");
  train->add_option("trace", t->trace, "Trace from `malv sjf record`")->required();
  train->add_option("--out", t->out, "Model file to write (.safetensors)")->required();
  train->add_option("--model", t->model, "Layer widths, 19 inputs first, 1 output last (relu)")
      ->capture_default_str();
  add_optimiser_flags(*train, t->epochs, t->batch, t->lr);
  train->add_option("--holdout", t->holdout, "Fraction of rows held out, at random (0: none)")
      ->capture_default_str()
      ->check(finite_in(0, 0.9));
  train->add_option("--seed", t->seed, "Initial weights, example order, held-out rows")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  train->add_flag("--json", t->json, "Print one JSON report instead of text");
  train->footer(
      "Example:\n"
      "  malv sjf record --out sjf.csv --bursts 300\n"
      "  malv sjf train sjf.csv --out src/policies/gpu_sched/malv_learned_sjf.safetensors");
  train->callback([t, &exit_code] {
    Status done = run_train(*t);
    if (!done.ok()) fmt::print(stderr, "malv sjf train: {}\n", done.error().message());
    exit_code = done.ok() ? 0 : 1;
  });
}

}  // namespace malv::cli
