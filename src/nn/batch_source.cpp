#include "nn/batch_source.h"

#include <fmt/format.h>

#include <cstring>
#include <span>

#include "nn/remote_device.h"

namespace malv::nn {

Result<std::uint32_t> LocalBatches::load(Mlp& model, std::uint64_t step) {
  const std::uint64_t steps_per_epoch = (train_.count + batch_ - 1) / batch_;
  const std::uint64_t epoch = step / steps_per_epoch;
  if (epoch != order_epoch_) {
    order_ = shuffled_indices(static_cast<std::uint32_t>(train_.count), seed_, epoch);
    order_epoch_ = epoch;
  }
  const std::size_t first = static_cast<std::size_t>(step % steps_per_epoch) * batch_;
  const std::size_t rows = std::min<std::size_t>(batch_, train_.count - first);
  const std::size_t dims = train_.dims;
  batch_x_.resize(rows * dims);
  batch_labels_.resize(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint32_t example = order_[first + r];
    std::memcpy(batch_x_.data() + r * dims, train_.features.data() + example * dims,
                dims * sizeof(float));
    batch_labels_[r] = train_.labels[example];
  }
  if (augmenter_) {
    augmenter_->apply_batch(batch_x_, std::span(order_).subspan(first, rows), seed_, step);
  }
  MALV_TRY(model.upload(batch_x_, batch_labels_));
  if (wait_for_upload_) MALV_TRY(model.device().synchronize());
  return static_cast<std::uint32_t>(rows);
}

Result<std::unique_ptr<HostBatches>> HostBatches::open(RemoteDevice& device,
                                                       guest::DatasetOptions options) {
  MALV_ASSIGN_OR_RETURN(guest::HostDataset dataset,
                        guest::HostDataset::open(device.connection(), options));
  const std::uint32_t dims = dataset.dims();
  return std::unique_ptr<HostBatches>(
      new HostBatches(device, std::move(options), std::move(dataset), dims));
}

Result<std::uint32_t> HostBatches::load(Mlp& model, std::uint64_t step) {
  if (&model.device() != &device_) {
    return Error(ErrorCode::kInvalidArgument, "the host's batches feed a model on its own device");
  }
  if (static_cast<std::uint64_t>(model.max_batch()) < dataset_->batch()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("model takes batches of {} at most, the dataset gives {}",
                             model.max_batch(), dataset_->batch()));
  }
  if (dataset_->position() != step) {
    // A resumed run (or a skip): the host pipeline restarts at this step.
    dataset_.reset();
    guest::DatasetOptions at = options_;
    at.first_batch = step;
    MALV_ASSIGN_OR_RETURN(guest::HostDataset reopened,
                          guest::HostDataset::open(device_.connection(), at));
    dataset_.emplace(std::move(reopened));
  }
  return dataset_->next(device_.stream(), device_.guest_buffer(model.input_buffer()),
                        device_.guest_buffer(model.labels_buffer()));
}

}  // namespace malv::nn
