// BuiltinKernel as the accelerator uses it: the built-in kernels' ids
// (include/malv/kernels.h lists them, for host and guest alike) as registry
// KernelIds, for backends that dispatch on them (switch over BuiltinKernel
// instead of comparing names). kernel_registry.cpp defines the kernels in
// that order; a registry test checks that they agree.
//
//   switch (static_cast<BuiltinKernel>(launch.kernel.value())) {
//     case BuiltinKernel::kGemm: ...
//   }
#pragma once

#include <cstdint>

#include "accel/kernel_registry.h"
#include "malv/kernels.h"

namespace malv::accel {

// So that accel::BuiltinKernel names the one list.
using malv::BuiltinKernel;
using malv::kBuiltinKernelCount;

constexpr KernelId kernel_id(BuiltinKernel kernel) {
  return KernelId{static_cast<std::uint32_t>(kernel)};
}

}  // namespace malv::accel
