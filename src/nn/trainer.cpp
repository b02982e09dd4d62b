#include "nn/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "nn/rng.h"

namespace malv::nn {

Result<std::unique_ptr<Trainer>> Trainer::create(Device& device, const Dataset& train,
                                                 const TrainOptions& options) {
  if (options.batch <= 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch size must be positive, got {}", options.batch));
  }
  if (train.count == 0 || train.count > 0xffffffffu) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("training set of {} examples", train.count));
  }
  MALV_ASSIGN_OR_RETURN(MlpSpec spec, MlpSpec::parse(options.model));
  if (static_cast<std::size_t>(spec.inputs()) != train.dims) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model {} takes {} inputs, the data has {} features", options.model,
                             spec.inputs(), train.dims));
  }
  if (spec.classes() < train.classes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model {} has {} outputs, the data has {} classes", options.model,
                             spec.classes(), train.classes));
  }
  MALV_ASSIGN_OR_RETURN(auto model, Mlp::create(device, spec,
                                                {.max_batch = options.batch,
                                                 .seed = options.seed,
                                                 .optimizer = options.optimizer}));
  return std::unique_ptr<Trainer>(new Trainer(train, options, std::move(model)));
}

Trainer::Trainer(const Dataset& train, const TrainOptions& options, std::unique_ptr<Mlp> model)
    : train_(train), options_(options), model_(std::move(model)) {
  const auto batch = static_cast<std::uint64_t>(options_.batch);
  steps_per_epoch_ = (train_.count + batch - 1) / batch;
}

std::uint64_t Trainer::total_steps() const {
  const std::uint64_t all = options_.epochs * steps_per_epoch_;
  return options_.max_steps == 0 ? all : std::min(all, options_.max_steps);
}

void Trainer::gather_batch(std::uint64_t step) {
  const std::uint64_t epoch = step / steps_per_epoch_;
  if (epoch != order_epoch_) {
    order_ = shuffled_indices(static_cast<std::uint32_t>(train_.count), options_.seed, epoch);
    order_epoch_ = epoch;
  }
  const auto batch = static_cast<std::size_t>(options_.batch);
  const std::size_t first = static_cast<std::size_t>(step % steps_per_epoch_) * batch;
  const std::size_t rows = std::min(batch, train_.count - first);
  const std::size_t dims = train_.dims;
  batch_x_.resize(rows * dims);
  batch_labels_.resize(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint32_t example = order_[first + r];
    std::memcpy(batch_x_.data() + r * dims, train_.features.data() + example * dims,
                dims * sizeof(float));
    batch_labels_[r] = train_.labels[example];
  }
}

Status Trainer::step() {
  gather_batch(model_->steps());
  return model_->train_step(batch_x_, batch_labels_);
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
    examples_since_report += batch_labels_.size();
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
  checkpoint.set("examples", std::to_string(train_.count));
  return checkpoint;
}

Status Trainer::save_checkpoint(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(Checkpoint checkpoint, this->checkpoint());
  MALV_TRY_CONTEXT(write_file_atomically(path, encode_checkpoint(checkpoint)),
                   "saving checkpoint " + path);
  return ok_status();
}

Status Trainer::resume(const Checkpoint& checkpoint) {
  // The example order depends on these; a different value would not resume
  // the same run.
  const std::pair<const char*, std::string> expected[] = {
      {"seed", std::to_string(options_.seed)},
      {"batch", std::to_string(options_.batch)},
      {"examples", std::to_string(train_.count)},
  };
  for (const auto& [key, want] : expected) {
    MALV_ASSIGN_OR_RETURN(std::string have, checkpoint.require(key));
    if (have != want) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("checkpoint was made with {} {}, this run uses {}", key, have, want));
    }
  }
  return model_->restore(checkpoint);
}

Status Trainer::resume_from(const std::string& path) {
  MALV_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, read_file(path));
  auto checkpoint = decode_checkpoint(bytes);
  if (!checkpoint.ok()) return std::move(checkpoint).error().with_context("reading " + path);
  MALV_TRY_CONTEXT(resume(checkpoint.value()), "resuming from " + path);
  return ok_status();
}

}  // namespace malv::nn
