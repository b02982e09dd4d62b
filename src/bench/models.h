// The MLP shapes the MLaaS benchmarks infer with, and random weights for
// them: `malv bench mlaas` (inline vs the CPU backend) and `malv bench cuda`
// (inline vs the GPU) measure the same two models.
#pragma once

#include <cstddef>
#include <random>

#include "malv/result.h"
#include "mlaas/mlp.h"

namespace malv::bench {

struct ModelCase {
  const char* key;  // figure key prefix
  const char* what;
  std::size_t in, hidden, out;
  mlaas::Activation last;
};

// LinnOS's 31-256-2 classifier and MLLB's 15-10-1 regressor.
inline constexpr ModelCase kModelCases[] = {
    {"linnos", "31-256-2 (LinnOS)", 31, 256, 2, mlaas::Activation::kSoftmax},
    {"mllb", "15-10-1 (MLLB)", 15, 10, 1, mlaas::Activation::kSigmoid},
};

// An in-hidden-out MLP with uniform random weights scaled by 1/sqrt(fan-in).
[[nodiscard]] Result<mlaas::Mlp> random_mlp(const ModelCase& shape, std::mt19937& rng);

}  // namespace malv::bench
