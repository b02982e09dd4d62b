#include "nn/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "nn/dataset.h"

namespace malv::nn {

Result<std::unique_ptr<Trainer>> Trainer::create(Device& device, const Dataset& train,
                                                 const TrainOptions& options) {
  if (options.batch <= 0 || options.batch > 0xffffffff) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch size must be positive, got {}", options.batch));
  }
  if (train.count == 0 || train.count > 0xffffffffu) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("training set of {} examples", train.count));
  }
  MALV_ASSIGN_OR_RETURN(MlpSpec spec, MlpSpec::parse(options.model));
  if (spec.classes() < train.classes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model {} has {} outputs, the data has {} classes", options.model,
                             spec.classes(), train.classes));
  }
  return create(device,
                std::make_unique<LocalBatches>(train, static_cast<std::uint32_t>(options.batch),
                                               options.seed),
                options);
}

Result<std::unique_ptr<Trainer>> Trainer::create(Device& device,
                                                 std::unique_ptr<BatchSource> source,
                                                 const TrainOptions& options) {
  if (options.batch <= 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch size must be positive, got {}", options.batch));
  }
  MALV_ASSIGN_OR_RETURN(MlpSpec spec, MlpSpec::parse(options.model));
  if (static_cast<std::uint64_t>(spec.inputs()) != source->dims()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model {} takes {} inputs, the data has {} features", options.model,
                             spec.inputs(), source->dims()));
  }
  MALV_ASSIGN_OR_RETURN(auto model, Mlp::create(device, spec,
                                                {.max_batch = options.batch,
                                                 .seed = options.seed,
                                                 .optimizer = options.optimizer}));
  return std::unique_ptr<Trainer>(new Trainer(std::move(source), options, std::move(model)));
}

Trainer::Trainer(std::unique_ptr<BatchSource> source, const TrainOptions& options,
                 std::unique_ptr<Mlp> model)
    : source_(std::move(source)), options_(options), model_(std::move(model)) {
  const auto batch = static_cast<std::uint64_t>(options_.batch);
  steps_per_epoch_ = (source_->examples() + batch - 1) / batch;
}

std::uint64_t Trainer::total_steps() const {
  const std::uint64_t all = options_.epochs * steps_per_epoch_;
  return options_.max_steps == 0 ? all : std::min(all, options_.max_steps);
}

Status Trainer::step() {
  MALV_ASSIGN_OR_RETURN(std::uint32_t rows, source_->load(*model_, model_->steps()));
  last_rows_ = rows;
  return model_->train_loaded(rows);
}

Status Trainer::run(const ProgressFn& progress) {
  const std::uint64_t total = total_steps();
  Stopwatch since_report;
  std::uint64_t examples_since_report = 0;
  auto report = [&](bool epoch_end) -> Status {
    MALV_ASSIGN_OR_RETURN(float loss, model_->mean_loss());
    const std::uint64_t done = model_->steps();
    Progress p;
    p.epoch = (done - 1) / steps_per_epoch_ + 1;
    p.step = done;
    p.total_steps = total;
    p.loss = loss;
    p.examples_per_s = static_cast<double>(examples_since_report) / since_report.elapsed_s();
    p.epoch_end = epoch_end;
    if (progress) progress(p);
    since_report.restart();
    examples_since_report = 0;
    return ok_status();
  };
  while (model_->steps() < total) {
    MALV_TRY(step());
    examples_since_report += last_rows_;
    const std::uint64_t done = model_->steps();
    const bool epoch_end = done % steps_per_epoch_ == 0;
    const bool last = done == total;
    if (epoch_end || last || (options_.log_every != 0 && done % options_.log_every == 0)) {
      MALV_TRY(report(epoch_end));
    }
    if ((epoch_end || last) && !options_.checkpoint_path.empty()) {
      MALV_TRY(save_checkpoint(options_.checkpoint_path));
    }
  }
  return model_->device().synchronize();
}

Result<Checkpoint> Trainer::checkpoint() {
  MALV_ASSIGN_OR_RETURN(Checkpoint checkpoint, model_->training_checkpoint());
  checkpoint.set("seed", std::to_string(options_.seed));
  checkpoint.set("batch", std::to_string(options_.batch));
  checkpoint.set("examples", std::to_string(source_->examples()));
  return checkpoint;
}

Status Trainer::save_checkpoint(const std::string& path) {
  if (path.starts_with(kHostCheckpointPrefix)) {
    return save_to_host(std::string_view(path).substr(kHostCheckpointPrefix.size()));
  }
  MALV_ASSIGN_OR_RETURN(Checkpoint checkpoint, this->checkpoint());
  MALV_TRY_CONTEXT(write_file_atomically(path, encode_checkpoint(checkpoint)),
                   "saving checkpoint " + path);
  return ok_status();
}

Status Trainer::resume(const Checkpoint& checkpoint) {
  // The example order depends on these; a different value would not resume
  // the same run.
  const Checkpoint::Expected expected[] = {
      {"seed", std::to_string(options_.seed)},
      {"batch", std::to_string(options_.batch)},
      {"examples", std::to_string(source_->examples())},
  };
  MALV_TRY(checkpoint.require_equal(expected));
  return model_->restore(checkpoint);
}

Status Trainer::resume_from(const std::string& path) {
  if (path.starts_with(kHostCheckpointPrefix)) {
    return resume_from_host(std::string_view(path).substr(kHostCheckpointPrefix.size()));
  }
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, read_file(path));
  auto checkpoint = decode_checkpoint(bytes);
  if (!checkpoint.ok()) return std::move(checkpoint).error().with_context("reading " + path);
  MALV_TRY_CONTEXT(resume(checkpoint.value()), "resuming from " + path);
  return ok_status();
}

}  // namespace malv::nn
