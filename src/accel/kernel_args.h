// The arguments of a Launch as a backend reads them, for what more than one
// backend reads the same way: the argument span, gemm's shapes and leading
// dimensions, and adam_step's bias corrections (which the CPU computes
// itself and CUDA computes on the host for its kernel, so both round alike).
//
// The registry (kernel_registry.h) validated the arguments before the
// launch was queued: kinds match the signature, dims are positive (and fit
// an int for gemm), flags are 0 or 1.
//
//   std::optional<KernelArgs> args = launch_args(launch);
//   const GemmArgs g = gemm_args(*args);
#pragma once

#include <cmath>
#include <optional>
#include <span>

#include "accel/backend.h"

namespace malv::accel {

using KernelArgs = std::span<const KernelArgValue>;

// The launch's arguments; nullopt when argc is more than a Launch can hold.
inline std::optional<KernelArgs> launch_args(const Launch& launch) {
  if (launch.argc > kMaxKernelArgs) return std::nullopt;
  return KernelArgs(launch.args.data(), launch.argc);
}

// gemm(a, b, c, m, n, k, trans_a, trans_b, alpha, beta), row-major:
// op(A) is m x k, stored k x m when transposed; likewise B; C is m x n.
struct GemmArgs {
  int m = 0;
  int n = 0;
  int k = 0;
  bool trans_a = false;
  bool trans_b = false;
  int lda = 0;  // row-major leading dimensions of A and B as stored
  int ldb = 0;
  float alpha = 0.0f;
  float beta = 0.0f;
};

inline GemmArgs gemm_args(KernelArgs args) {
  GemmArgs g;
  g.m = static_cast<int>(args[3].i64);
  g.n = static_cast<int>(args[4].i64);
  g.k = static_cast<int>(args[5].i64);
  g.trans_a = args[6].i64 != 0;
  g.trans_b = args[7].i64 != 0;
  g.lda = g.trans_a ? g.m : g.k;
  g.ldb = g.trans_b ? g.k : g.n;
  g.alpha = args[8].f32;
  g.beta = args[9].f32;
  return g;
}

// adam_step(param, grad, m, v, n, lr, beta1, beta2, eps, step): the bias
// corrections 1 - beta^step, computed in double and rounded to float once.
struct AdamCorrections {
  float first = 0.0f;   // 1 - beta1^step
  float second = 0.0f;  // 1 - beta2^step
};

inline AdamCorrections adam_corrections(KernelArgs args) {
  const double step = static_cast<double>(args[9].i64);
  return AdamCorrections{
      static_cast<float>(1.0 - std::pow(static_cast<double>(args[6].f32), step)),
      static_cast<float>(1.0 - std::pow(static_cast<double>(args[7].f32), step))};
}

}  // namespace malv::accel
