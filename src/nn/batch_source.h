// BatchSource: where a training step's batch comes from.
//
// Step s always trains on the same examples: epoch s / steps_per_epoch,
// batch s % steps_per_epoch of that epoch's permutation
// (data::shuffled_indices with the run's seed), the last batch of an epoch
// possibly short. Two sources implement that order:
//
//  * LocalBatches — the guest's own copy of the dataset: gather the rows in
//    host memory and upload them (what an ML program does without offload).
//    Optionally it augments each row on the guest's CPU before the upload
//    (data::Augmenter: random crop, flip, noise): step s then holds the same
//    examples in the same order, each augmented as augment_seed(seed, s,
//    example) draws, so an augmented run is as reproducible as a plain one.
//  * HostBatches — the host's data pipeline (offload): the host reads,
//    shuffles and stages the batches on the device ahead of use; the guest
//    only asks for the next one. RemoteDevice only.
//
// Without augmentation both give the model the same bytes for the same
// step, so a run's losses do not depend on which one feeds it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "data/augment.h"
#include "malv/dataset.h"
#include "nn/dataset.h"
#include "nn/mlp.h"

namespace malv::nn {

class RemoteDevice;

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Puts batch `step` into the model's input and label buffers (queued on
  // the model's device); returns its number of examples.
  [[nodiscard]] virtual Result<std::uint32_t> load(Mlp& model, std::uint64_t step) = 0;
  virtual std::uint64_t examples() const = 0;
  virtual std::uint32_t dims() const = 0;
};

class LocalBatches final : public BatchSource {
 public:
  // `train` must outlive the source. With wait_for_upload every load()
  // waits until its upload reached the device, as a blocking copy does
  // (cudaMemcpy from pageable memory, tensor.to(device) in a plain loop).
  // With an `augmenter` (made for train.dims) every row is augmented before
  // the upload.
  LocalBatches(const Dataset& train, std::uint32_t batch, std::uint64_t seed,
               bool wait_for_upload = false, std::optional<data::Augmenter> augmenter = {})
      : train_(train),
        batch_(batch),
        seed_(seed),
        wait_for_upload_(wait_for_upload),
        augmenter_(std::move(augmenter)) {}
  Result<std::uint32_t> load(Mlp& model, std::uint64_t step) override;
  std::uint64_t examples() const override { return train_.count; }
  std::uint32_t dims() const override { return static_cast<std::uint32_t>(train_.dims); }

 private:
  const Dataset& train_;
  const std::uint32_t batch_;
  const std::uint64_t seed_;
  const bool wait_for_upload_;
  std::optional<data::Augmenter> augmenter_;
  std::uint64_t order_epoch_ = ~0ull;  // the epoch `order_` belongs to
  std::vector<std::uint32_t> order_;
  std::vector<float> batch_x_;
  std::vector<std::int32_t> batch_labels_;
};

class HostBatches final : public BatchSource {
 public:
  // Opens the dataset on the host behind `device` (options.batch and
  // options.seed must be the run's). The device must outlive the source.
  [[nodiscard]] static Result<std::unique_ptr<HostBatches>> open(RemoteDevice& device,
                                                                 guest::DatasetOptions options);
  Result<std::uint32_t> load(Mlp& model, std::uint64_t step) override;
  std::uint64_t examples() const override { return dataset_->examples(); }
  std::uint32_t dims() const override { return dims_; }

 private:
  HostBatches(RemoteDevice& device, guest::DatasetOptions options, guest::HostDataset dataset,
              std::uint32_t dims)
      : device_(device), options_(std::move(options)), dataset_(std::move(dataset)), dims_(dims) {}

  RemoteDevice& device_;
  guest::DatasetOptions options_;
  std::optional<guest::HostDataset> dataset_;
  std::uint32_t dims_;
};

}  // namespace malv::nn
