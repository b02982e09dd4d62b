// `malv memory train TRACE...`: trains the learned memory policy's model on
// recorded access traces and writes it as an MLaaS model file. The rows come
// from vgpu/memory_training_data.h, the training from train/model_training.h
// (the one training path); this joins them, parses and prints
// (docs/training.md, "The learned memory policy's model").
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "cli/training_flags.h"
#include "cli/training_progress.h"
#include "train/feature_table.h"
#include "train/model_training.h"
#include "vgpu/memory_training_data.h"

namespace malv::cli {
namespace {

struct MemoryTrainFlags {
  std::vector<std::string> traces;
  std::string out;
  std::string model = "10-32-32-1";
  std::uint64_t epochs = 20;
  std::uint64_t batch = 64;
  double lr = 1e-3;
  double holdout = 0.2;
  std::uint64_t seed = 1;
  std::uint64_t max_rows = 40000;
  std::uint64_t sample_every = 0;
  std::string csv;
  bool json = false;
};

// The rows as the training path's table; its row order is the traces'
// (time order), so the held-out rows are the last ones: the future.
train::FeatureTable feature_table(const vgpu::MemoryTrainingRows& rows, const std::string& origin) {
  train::FeatureTable table;
  table.origin = origin;
  table.columns = rows.columns;
  table.values = rows.values;
  table.lines.resize(rows.rows());
  for (std::size_t r = 0; r < table.lines.size(); ++r) table.lines[r] = r + 2;  // as in the CSV
  return table;
}

void print_json(const MemoryTrainFlags& f, const vgpu::MemoryTrainingRows& rows,
                const train::TrainingReport& r, const vgpu::EvictionOrderAgreement& order) {
  const nlohmann::json out = {
      {"traces", f.traces},
      {"out", f.out},
      {"csv", f.csv.empty() ? nlohmann::json() : nlohmann::json(f.csv)},
      {"ops", rows.ops},
      {"candidates", rows.candidates},
      {"sampled_ops", rows.sampled_ops},
      {"sample_every", rows.sample_every},
      {"rows", rows.rows()},
      {"model", r.model},
      {"features", r.features},
      {"target", r.targets.front()},
      {"train_rows", r.train_rows},
      {"holdout_rows", r.holdout_rows},
      {"epochs", r.epochs.size()},
      {"steps", r.steps},
      {"train_mse", r.train.loss},
      {"holdout_mse", r.holdout ? nlohmann::json(r.holdout->loss) : nlohmann::json()},
      {"baseline_mse", r.baseline.loss},
      {"order",
       {{"on", r.holdout ? "held-out rows" : "training rows"},
        {"pairs", order.pairs},
        {"decisions", order.decisions},
        {"model_pairs", order.model_pairs},
        {"lru_pairs", order.lru_pairs},
        {"model_first_victim", order.model_first_victim},
        {"lru_first_victim", order.lru_first_victim}}}};
  fmt::print("{}\n", out.dump(2));
}

Status run_memory_train(const MemoryTrainFlags& f) {
  for (const std::string& path : {f.out, f.csv}) {  // found out before the work, not after it
    if (path.empty()) continue;
    const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: no directory {} to write it in", path, dir.string()));
    }
  }
  MALV_ASSIGN_OR_RETURN(
      vgpu::MemoryTrainingRows rows,
      vgpu::read_memory_training_rows(
          f.traces, {.max_rows = f.max_rows, .sample_every = f.sample_every, .seed = f.seed}));
  if (!f.csv.empty()) MALV_TRY(vgpu::write_memory_training_csv(rows, f.csv));
  if (!f.json) {
    fmt::print("{}: {} ops, {} samples; {} rows from {} ops (1 op in {:.3g})\n",
               fmt::join(f.traces, ", "), rows.ops, rows.candidates, rows.rows(), rows.sampled_ops,
               rows.sample_every);
    if (!f.csv.empty()) fmt::print("wrote the rows to {}\n", f.csv);
    std::fflush(stdout);
  }
  train::TrainingOptions options{.targets = {std::string(vgpu::kMemoryTargetName)},
                                 .model = f.model,
                                 .epochs = f.epochs,
                                 .batch = static_cast<std::int64_t>(f.batch),
                                 .lr = static_cast<float>(f.lr),
                                 .holdout = f.holdout,
                                 .split = train::HoldoutSplit::kLast,
                                 .seed = f.seed};
  const train::FeatureTable table =
      feature_table(rows, f.csv.empty() ? fmt::format("{}", fmt::join(f.traces, ",")) : f.csv);
  const train::EpochFn progress = epoch_printer(f.json);
  MALV_ASSIGN_OR_RETURN(train::TrainedModel trained,
                        train::train_mlaas_model(table, options, progress));
  MALV_TRY(train::save_trained_model(trained, f.out));

  const train::TrainingReport& r = trained.report;
  const std::size_t first = r.holdout ? r.train_rows : 0;
  const vgpu::EvictionOrderAgreement order =
      vgpu::eviction_order_agreement(trained.model, rows, first);
  if (f.json) {
    print_json(f, rows, r, order);
    return ok_status();
  }
  fmt::print("model {} (mse loss), features {} -> {}\n", r.model, fmt::join(r.features, ","),
             r.targets.front());
  fmt::print("trained on {} rows, {} steps; train mse {:.6g}\n", r.train_rows, r.steps,
             r.train.loss);
  const char* on = r.holdout ? "held-out" : "training";
  if (r.holdout) {
    fmt::print("held-out ({} rows, the last): mse {:.6g}\n", r.holdout_rows, r.holdout->loss);
  }
  fmt::print("baseline (the training mean) on the {} rows: mse {:.6g}\n", on, r.baseline.loss);
  fmt::print(
      "eviction order on the {} rows ({} ops, {} pairs): pairs ordered like the true next uses "
      "{:.4f} (lru {:.4f}); first victim used furthest ahead {:.4f} (lru {:.4f})\n",
      on, order.decisions, order.pairs, order.model_pairs, order.lru_pairs,
      order.model_first_victim, order.lru_first_victim);
  fmt::print("wrote {} (for `malv memory replay --model`)\n", f.out);
  return ok_status();
}

}  // namespace

void register_memory_train(CLI::App& memory, int& exit_code) {
  auto f = std::make_shared<MemoryTrainFlags>();
  CLI::App* sub = memory.add_subcommand(
      "train",
      "Train the learned eviction policy's model on recorded access traces: each candidate's "
      "history features -> log1p(ops until its next use); writes an MLaaS model file");
  sub->add_option("trace", f->traces, "Access trace files, as the host records them")->required();
  sub->add_option("--out", f->out, "Model file to write (.safetensors)")->required();
  sub->add_option("--model", f->model, "Layer widths, inputs first (hidden layers relu)")
      ->capture_default_str();
  add_optimiser_flags(*sub, f->epochs, f->batch, f->lr);
  sub->add_option("--holdout", f->holdout, "Fraction of rows held out (the last ones; 0: none)")
      ->capture_default_str()
      ->check(finite_in(0, 0.99));
  sub->add_option("--seed", f->seed, "Sampling, initial weights, example order")
      ->capture_default_str()
      ->check(whole_number_in(0, std::numeric_limits<std::uint64_t>::max()));
  sub->add_option("--max-rows", f->max_rows,
                  "At most this many rows; ops are sampled so that about this many come out "
                  "(0: every op)")
      ->capture_default_str()
      ->check(whole_number_in(0, std::uint64_t{1} << 40));
  sub->add_option("--sample-every", f->sample_every,
                  "Keep one op's candidates in N instead (0: from --max-rows)")
      ->capture_default_str()
      ->check(whole_number_in(0, std::uint64_t{1} << 40));
  sub->add_option("--csv", f->csv, "Also write the rows (CSV, as `malv mlaas train --data` reads)");
  sub->add_flag("--json", f->json, "Print one JSON report at the end instead of text");
  sub->footer(
      "A sample is a buffer that could be evicted at an op: used before, still allocated, not "
      "used by that op. Its inputs are include/malv/memory_features.h's, from its history as of "
      "that op; its target is log1p of the ops until its next use (MALV_MEMORY_FAR_OPS if none). "
      "The held-out rows are the last ones (docs/training.md).\n\n"
      "Example:\n"
      "  malv memory train vm-a.trace vm-b.trace --out evict.safetensors --epochs 30\n"
      "  malv memory replay vm-c.trace --capacity-mib 512 --model evict.safetensors");
  sub->callback([f, &exit_code] {
    Status done = run_memory_train(*f);
    if (!done.ok()) fmt::print(stderr, "malv memory train: {}\n", done.error().message());
    exit_code = done.ok() ? 0 : 1;
  });
}

}  // namespace malv::cli
