// `malv guest train`: a guest's training job, on a host's vGPU or natively
// (harness/train_workload.cpp tells what it does).
#pragma once

#include <cstdint>
#include <string>

#include "data/augment.h"
#include "harness/guest_target.h"
#include "malv/result.h"
#include "nn/dataset.h"

namespace malv::harness {

struct TrainOptions {
  TargetOptions target;
  std::string model = "mlp:784-256-128-10";
  std::uint64_t epochs = 5;
  std::int64_t batch = 128;
  float lr = 0.0f;  // 0: the optimizer's default
  std::string optimizer = "adam";
  std::uint64_t seed = 1;
  std::uint64_t max_steps = 0;
  std::uint64_t log_every = 100;
  std::string checkpoint;
  std::string resume;
  std::string data_dir = nn::kFashionMnistDir;
  bool progress_json = false;
  std::string host_data;  // dataset path on the host: its data pipeline feeds the batches
  // Augment every batch on this (the guest's) CPU before its upload, as
  // `augmentation` says; only with the guest's own data (not with host_data).
  bool augment = false;
  data::AugmentOptions augmentation;
};

[[nodiscard]] Status train(const TrainOptions& options);

}  // namespace malv::harness
