#include "offload/data_pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "data/rng.h"

namespace malv::offload {
DataPipeline::DataPipeline(accel::Backend& backend, std::shared_ptr<const data::Dataset> dataset,
                           PipelineOptions options)
    : backend_(backend), dataset_(std::move(dataset)), options_(std::move(options)) {
  steps_per_epoch_ = (dataset_->count + options_.batch - 1) / options_.batch;
  depth_ = std::clamp<std::uint32_t>(options_.initial_depth, 1, options_.max_depth);
  next_to_stage_ = options_.first_batch;
  stats_.depth = depth_;
  last_decision_ns_ = mono_now_ns();
}

Result<std::shared_ptr<DataPipeline>> DataPipeline::start(
    accel::Backend& backend, std::shared_ptr<const data::Dataset> dataset,
    PipelineOptions options) {
  if (dataset == nullptr || dataset->count == 0 || dataset->dims == 0) {
    return Error(ErrorCode::kInvalidArgument, "data pipeline over an empty dataset");
  }
  if (options.batch == 0 || options.max_depth == 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch {} and max depth {} must be positive", options.batch,
                             options.max_depth));
  }
  std::shared_ptr<DataPipeline> pipeline(
      new DataPipeline(backend, std::move(dataset), std::move(options)));
  MALV_TRY(pipeline->allocate_slots());
  pipeline->producer_ = std::thread([raw = pipeline.get()] { raw->produce_loop(); });
  return pipeline;
}

Status DataPipeline::allocate_slots() {
  MALV_ASSIGN_OR_RETURN(queue_, backend_.create_queue(accel::QueuePriority::kNormal));
  have_queue_ = true;
  // Staged batches plus the one the guest's stream is copying from and the
  // one it will take next: the producer never waits on the consumer's copy.
  const std::uint32_t count = options_.max_depth + 2;
  const std::size_t feature_bytes = std::size_t{options_.batch} * dataset_->dims * sizeof(float);
  const std::size_t label_bytes = std::size_t{options_.batch} * sizeof(std::int32_t);
  slots_.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    // Only complete slots join slots_ (the destructor frees those); a
    // failure half-way gives back what this slot already got.
    MALV_ASSIGN_OR_RETURN(accel::DevicePtr features, backend_.allocate(feature_bytes));
    Result<accel::DevicePtr> labels = backend_.allocate(label_bytes);
    if (!labels.ok()) {
      backend_.free(features);
      return std::move(labels).error();
    }
    Result<accel::EventId> ready = backend_.create_event();
    if (!ready.ok()) {
      backend_.free(features);
      backend_.free(labels.value());
      return std::move(ready).error();
    }
    Slot& slot = slots_.emplace_back();
    slot.features = features;
    slot.labels = labels.value();
    slot.ready = ready.value();
    slot.host_features.resize(std::size_t{options_.batch} * dataset_->dims);
    slot.host_labels.resize(options_.batch);
  }
  return ok_status();
}

DataPipeline::~DataPipeline() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  producer_cv_.notify_all();
  consumer_cv_.notify_all();
  if (producer_.joinable()) producer_.join();
  if (have_queue_) backend_.destroy_queue(queue_);  // waits for uploads in flight
  for (Slot& slot : slots_) {
    backend_.free(slot.features);
    backend_.free(slot.labels);
    backend_.destroy_event(slot.ready);
  }
}

std::uint32_t DataPipeline::gather(Slot& slot, std::uint64_t index) {
  // Same order as nn::Trainer: batch index % steps_per_epoch of the epoch's
  // permutation.
  const std::uint64_t epoch = index / steps_per_epoch_;
  if (epoch != order_epoch_) {
    order_ =
        data::shuffled_indices(static_cast<std::uint32_t>(dataset_->count), options_.seed, epoch);
    order_epoch_ = epoch;
  }
  const std::size_t first = static_cast<std::size_t>(index % steps_per_epoch_) * options_.batch;
  const std::size_t rows = std::min<std::size_t>(options_.batch, dataset_->count - first);
  const std::size_t dims = dataset_->dims;
  if (options_.producer_delay) {
    const std::int64_t extra = options_.producer_delay(options_.vm, index);
    if (extra > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(extra));
  }
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint32_t example = order_[first + r];
    std::memcpy(slot.host_features.data() + r * dims, dataset_->features.data() + example * dims,
                dims * sizeof(float));
    slot.host_labels[r] = dataset_->labels[example];
  }
  return static_cast<std::uint32_t>(rows);
}

void DataPipeline::produce_loop() {
  auto on_upload = [](void* context, std::uint64_t, ErrorCode status) {
    if (status == ErrorCode::kOk) return;
    auto* self = static_cast<DataPipeline*>(context);
    {
      std::lock_guard lock(self->mu_);
      if (self->producer_error_.ok()) {
        self->producer_error_ = Error(status, "uploading a batch to the device failed");
      }
    }
    self->consumer_cv_.notify_all();
  };
  std::unique_lock lock(mu_);
  for (;;) {
    auto free_slot = [&]() -> Slot* {
      for (Slot& s : slots_) {
        if (s.state == SlotState::kFree) return &s;
      }
      return nullptr;
    };
    producer_cv_.wait(lock, [&] {
      if (stop_) return true;
      const bool wanted = staged_.size() < depth_ || (consumer_waiting_ && staged_.empty());
      return wanted && free_slot() != nullptr;
    });
    if (stop_) return;
    Slot& slot = *free_slot();
    slot.state = SlotState::kStaged;
    const std::uint64_t index = next_to_stage_++;
    lock.unlock();

    const std::int64_t t0 = mono_now_ns();
    slot.held = backend_.hold_resident(slot.features);
    if (slot.held && !backend_.hold_resident(slot.labels)) {
      backend_.release_resident(slot.features);
      slot.held = false;
    }
    const std::uint32_t rows = gather(slot, index);
    backend_.enqueue(queue_,
                     accel::CopyH2D{slot.host_features.data(), slot.features,
                                    std::size_t{rows} * dataset_->dims * sizeof(float)},
                     {on_upload, this, index});
    backend_.enqueue(queue_,
                     accel::CopyH2D{slot.host_labels.data(), slot.labels,
                                    std::size_t{rows} * sizeof(std::int32_t)},
                     {on_upload, this, index});
    backend_.enqueue(queue_, accel::RecordEvent{slot.ready}, {on_upload, this, index});
    const std::int64_t t1 = mono_now_ns();

    lock.lock();
    production_ns_ += t1 - t0;
    staged_.push_back({static_cast<std::uint32_t>(&slot - slots_.data()), index, rows});
    ++stats_.produced;
    consumer_cv_.notify_all();
  }
}

Result<DataPipeline::Batch> DataPipeline::next() {
  Batch batch;
  malv_prefetch_observation observation{};
  malv_prefetch_outcome outcome{};
  bool ask = false;
  bool tell = false;
  {
    std::unique_lock lock(mu_);
    if (!producer_error_.ok()) return producer_error_.error();
    const std::int64_t t0 = mono_now_ns();
    if (staged_.empty()) {
      consumer_waiting_ = true;
      producer_cv_.notify_all();
      consumer_cv_.wait(lock, [&] { return stop_ || !staged_.empty() || !producer_error_.ok(); });
      consumer_waiting_ = false;
    }
    const std::int64_t waited = mono_now_ns() - t0;
    stats_.consumer_stall_ns += waited;
    stall_since_decision_ns_ += waited;
    if (waited > 0 && options_.on_stall) options_.on_stall(waited);
    if (!producer_error_.ok()) return producer_error_.error();
    if (stop_) return Error(ErrorCode::kUnavailable, "the data pipeline is shutting down");
    const Staged staged = staged_.front();
    staged_.pop_front();
    Slot& slot = slots_[staged.slot];
    slot.state = SlotState::kInUse;
    ++stats_.consumed;
    batch = {staged.index, staged.rows, staged.slot, slot.features, slot.labels, slot.ready};
    producer_cv_.notify_all();

    if (options_.prefetch && stats_.consumed % kDecisionEvery == 0) {
      const std::int64_t now = mono_now_ns();
      const double seconds =
          static_cast<double>(std::max<std::int64_t>(1, now - last_decision_ns_)) * 1e-9;
      const std::uint64_t produced = stats_.produced - produced_at_decision_;
      observation.vm_id = 0;
      observation.stream_id = options_.stream_id;
      observation.current_depth = depth_;
      observation.max_depth = options_.max_depth;
      observation.consumption_per_s =
          static_cast<double>(stats_.consumed - consumed_at_decision_) / seconds;
      observation.production_per_s = production_ns_ > 0 ? static_cast<double>(produced) * 1e9 /
                                                              static_cast<double>(production_ns_)
                                                        : 0.0;
      observation.consumer_stall_ns = stall_since_decision_ns_;
      last_decision_ns_ = now;
      consumed_at_decision_ = stats_.consumed;
      produced_at_decision_ = stats_.produced;
      production_ns_ = 0;
      stall_since_decision_ns_ = 0;
      ask = true;
      if (decided_) {
        outcome.stream = last_observation_;
        outcome.depth_used = depth_;  // what applied since the previous decision
        outcome.consumer_stall_ns = observation.consumer_stall_ns;
        tell = true;
      }
      last_observation_ = observation;
      decided_ = true;
    }
  }
  if (ask) {
    // The policy runs outside the lock: the producer keeps staging meanwhile.
    if (tell && options_.feedback) options_.feedback(options_.vm, outcome);
    const std::uint32_t depth = std::clamp<std::uint32_t>(
        options_.prefetch(options_.vm, observation), 1, options_.max_depth);
    std::lock_guard lock(mu_);
    ++stats_.policy_decisions;
    if (depth != depth_) {
      log::debug("offload", "VM {}: prefetch depth {} -> {}", options_.vm, depth_, depth);
      depth_ = depth;
      stats_.depth = depth;
      producer_cv_.notify_all();
    }
  }
  return batch;
}

void DataPipeline::release(std::uint32_t slot) {
  {
    std::lock_guard lock(mu_);
    if (slot >= slots_.size()) return;
    Slot& s = slots_[slot];
    if (s.held) {
      backend_.release_resident(s.features);
      backend_.release_resident(s.labels);
      s.held = false;
    }
    s.state = SlotState::kFree;
  }
  producer_cv_.notify_all();
}

PipelineStats DataPipeline::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace malv::offload
