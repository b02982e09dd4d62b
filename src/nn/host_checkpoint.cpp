// Trainer checkpoints kept by the MaLV-OS host (Trainer::save_to_host and
// resume_from_host): the content of Trainer::checkpoint(), parameters and
// optimizer state as one entry per device tensor, the metadata (model,
// optimizer, lr, step, seed, batch, examples) as an nn checkpoint without
// arrays, saved and restored by the host's checkpoint service
// (guest/checkpoint.h) on the device's stream.
#include <fmt/format.h>

#include "malv/checkpoint.h"
#include "nn/remote_device.h"
#include "nn/trainer.h"

namespace malv::nn {
namespace {

Result<RemoteDevice*> remote_device_of(Mlp& model) {
  auto* remote = dynamic_cast<RemoteDevice*>(&model.device());
  if (remote == nullptr) {
    return Error(ErrorCode::kFailedPrecondition,
                 "a host checkpoint needs a model on a MaLV-OS host (not --native)");
  }
  return remote;
}

// One item per tensor, whole, under the tensor's name.
std::vector<guest::CheckpointItem> items_of(
    const RemoteDevice& device, const std::vector<std::pair<std::string, Tensor*>>& tensors) {
  std::vector<guest::CheckpointItem> items;
  for (const auto& [name, tensor] : tensors) {
    items.push_back({name, &device.guest_buffer(tensor->buffer), 0, tensor->buffer.size()});
  }
  return items;
}

}  // namespace

Checkpoint Trainer::host_checkpoint_metadata() const {
  Checkpoint metadata = model_->training_metadata();
  metadata.set("seed", std::to_string(options_.seed));
  metadata.set("batch", std::to_string(options_.batch));
  metadata.set("examples", std::to_string(source_->examples()));
  return metadata;
}

Status Trainer::save_to_host(std::string_view name) {
  MALV_ASSIGN_OR_RETURN(RemoteDevice * remote, remote_device_of(*model_));
  const auto tensors = model_->training_tensors();
  const auto items = items_of(*remote, tensors);
  const std::vector<std::byte> metadata = encode_checkpoint(host_checkpoint_metadata());
  auto written = guest::save_checkpoint(remote->connection(), remote->stream(), name, items,
                                        metadata, guest::SaveMode::kDurable);
  if (!written.ok()) {
    return std::move(written).error().with_context(fmt::format("saving checkpoint host:{}", name));
  }
  return ok_status();
}

Status Trainer::resume_from_host(std::string_view name) {
  const std::string what = fmt::format("resuming from checkpoint host:{}", name);
  MALV_ASSIGN_OR_RETURN(RemoteDevice * remote, remote_device_of(*model_));
  const auto tensors = model_->training_tensors();
  const auto items = items_of(*remote, tensors);
  auto stored = guest::restore_checkpoint(remote->connection(), remote->stream(), name, items);
  if (!stored.ok()) return std::move(stored).error().with_context(what);
  auto metadata = decode_checkpoint(stored.value());
  if (!metadata.ok()) return std::move(metadata).error().with_context(what);
  // The tensors already hold the saved state (their sizes matched); the run
  // must also be the same one for the example order to continue.
  for (const auto& [key, want] : host_checkpoint_metadata().metadata) {
    if (key == "step") continue;
    const std::optional<std::string> have = metadata->get(key);
    if (have != want) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("checkpoint was made with {} {}, this run uses {}", key,
                               have.value_or("(none)"), want))
          .with_context(what);
    }
  }
  MALV_TRY_CONTEXT(model_->restore_metadata(metadata.value()), what);
  return ok_status();
}

}  // namespace malv::nn
