// `malv guest infer`: a guest serving inference requests on a host's vGPU
// or natively (harness/infer_workload.cpp tells what it does).
#pragma once

#include <cstdint>
#include <string>

#include "harness/guest_target.h"
#include "malv/result.h"
#include "nn/dataset.h"

namespace malv::harness {

struct InferOptions {
  TargetOptions target;
  std::string checkpoint;
  double rate = 50.0;
  std::string arrivals = "poisson";
  std::int64_t batch = 16;
  double duration_s = 10.0;
  std::uint64_t requests = 0;  // 0: run for duration_s
  double report_every_s = 1.0;
  std::uint64_t seed = 1;
  bool json = false;
  std::string data_dir = nn::kFashionMnistDir;
};

[[nodiscard]] Status infer(const InferOptions& options);

}  // namespace malv::harness
