// Trainer: the training loop of `malv guest train`, `malv demo` and the
// overhead benchmark: epochs over a shuffled dataset, mini-batches, progress
// reports, checkpoints and resumption.
//
// Step s of a run always trains on the same examples: epoch s / steps_per_epoch,
// batch s % steps_per_epoch of that epoch's permutation (shuffled_indices with
// the run's seed). So a run resumed from a checkpoint at step K continues
// exactly as the uninterrupted run would have, bit for bit.
//
//   MALV_ASSIGN_OR_RETURN(auto trainer, Trainer::create(device, train_set, options));
//   MALV_TRY(trainer->run([](const Progress& p) { fmt::print("{} {}\n", p.step, p.loss); }));
//   MALV_ASSIGN_OR_RETURN(double accuracy, trainer->model().evaluate(test_set));
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nn/batch_source.h"
#include "nn/checkpoint.h"
#include "nn/dataset.h"
#include "nn/mlp.h"

namespace malv::nn {

// A checkpoint path "host:NAME" names checkpoint NAME kept by the host.
inline constexpr std::string_view kHostCheckpointPrefix = "host:";

struct TrainOptions {
  std::string model = "mlp:784-256-128-10";
  OptimizerConfig optimizer;
  std::uint64_t epochs = 5;
  std::int64_t batch = 128;
  std::uint64_t seed = 1;         // initial weights and example order
  std::uint64_t max_steps = 0;    // stop after this many steps in all; 0: no cap
  std::uint64_t log_every = 100;  // steps between loss read-backs; 0: only at epoch ends
  std::string checkpoint_path;    // if set: saved at each epoch end and at the end
                                  // ("host:NAME": by the host, see save_to_host)
};

struct Progress {
  std::uint64_t epoch = 0;  // 1-based
  std::uint64_t step = 0;   // steps done in all
  std::uint64_t total_steps = 0;
  float loss = 0.0f;            // mean over the steps since the previous report
  double examples_per_s = 0.0;  // since the previous report
  bool epoch_end = false;
};
using ProgressFn = std::function<void(const Progress&)>;

class Trainer {
 public:
  // `train` must outlive the trainer.
  [[nodiscard]] static Result<std::unique_ptr<Trainer>> create(Device& device, const Dataset& train,
                                                               const TrainOptions& options);
  // Batches from `source` (e.g. the host's data pipeline, HostBatches).
  [[nodiscard]] static Result<std::unique_ptr<Trainer>> create(Device& device,
                                                               std::unique_ptr<BatchSource> source,
                                                               const TrainOptions& options);

  // Steps until total_steps(), reporting progress and saving checkpoints.
  [[nodiscard]] Status run(const ProgressFn& progress = {});
  // One step at the current position (no reports, no checkpoint).
  [[nodiscard]] Status step();

  std::uint64_t step_count() const { return model_->steps(); }
  std::uint64_t steps_per_epoch() const { return steps_per_epoch_; }
  // epochs x steps_per_epoch, capped by max_steps.
  std::uint64_t total_steps() const;
  Mlp& model() { return *model_; }
  const TrainOptions& options() const { return options_; }

  // The model's training checkpoint plus the run's seed and batch size.
  [[nodiscard]] Result<Checkpoint> checkpoint();
  [[nodiscard]] Status save_checkpoint(const std::string& path);
  // Continues from a checkpoint of a run with the same options.
  [[nodiscard]] Status resume(const Checkpoint& checkpoint);
  [[nodiscard]] Status resume_from(const std::string& path);
  // The same checkpoint kept by the MaLV-OS host the model runs on (its
  // checkpoint service; nn/host_checkpoint.cpp): the device buffers are
  // snapshot on the host in stream order, never copied to the guest, and
  // restored into a later session. Needs a RemoteDevice. save_checkpoint()
  // and resume_from() take "host:NAME" for these.
  [[nodiscard]] Status save_to_host(std::string_view name);
  [[nodiscard]] Status resume_from_host(std::string_view name);

 private:
  // Trainer::checkpoint()'s metadata without the arrays.
  Checkpoint host_checkpoint_metadata() const;
  Trainer(std::unique_ptr<BatchSource> source, const TrainOptions& options,
          std::unique_ptr<Mlp> model);

  std::unique_ptr<BatchSource> source_;
  TrainOptions options_;
  std::unique_ptr<Mlp> model_;
  std::uint64_t steps_per_epoch_ = 0;
  std::uint64_t last_rows_ = 0;  // examples in the latest step
};

}  // namespace malv::nn
