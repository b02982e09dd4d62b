// BuiltinKernel: the ids of the built-in kernels as named constants, for
// backends that dispatch on them (switch over BuiltinKernel instead of
// comparing names). The values are the 1-based registry order of
// kernel_registry.cpp; a registry test checks that they agree.
//
//   switch (static_cast<BuiltinKernel>(launch.kernel.value())) {
//     case BuiltinKernel::kGemm: ...
//   }
#pragma once

#include <cstdint>

#include "accel/kernel_registry.h"

namespace malv::accel {

enum class BuiltinKernel : std::uint32_t {
  kNop = 1,
  kGemm,
  kAdd,
  kScale,
  kAxpy,
  kBiasAdd,
  kRelu,
  kReluBackward,
  kSoftmaxXent,
  kSoftmaxXentBackward,
  kSumRows,
  kAdamStep,
  kSgdStep,
  kFill,
  kArgmaxRows,
};

inline constexpr std::uint32_t kBuiltinKernelCount = 15;

constexpr KernelId kernel_id(BuiltinKernel kernel) {
  return KernelId{static_cast<std::uint32_t>(kernel)};
}

}  // namespace malv::accel
