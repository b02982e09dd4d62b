// Launching one built-in kernel on a stream: the grid for each kernel, its
// parameters as the .cu signature takes them, and gemm through cuBLAS.
//
// Arguments were validated against the registry (kernel_registry.h) before
// the op was queued; what is left to check here is only what the backend
// knows: that every buffer belongs to the current context generation
// (cuda_allocations.h), and, for the kernels that read labels, that a
// status word was provided. Labels are data: the kernels check each one
// where they use it (cuda_kernels.cu).
//
//   OpStatus s = launch_builtin(target, launch, slot);
#pragma once

#include <cublas_v2.h>
#include <cuda.h>

#include <cstdint>
#include <string>

#include "accel/backend.h"
#include "accel/cuda/cuda_context.h"
#include "accel/cuda/cuda_status_slots.h"

namespace malv::accel::cuda {

// What one enqueue step came to: ok, or an ErrorCode with the driver's
// result (CUDA_SUCCESS when the failure was not the driver's) and a line
// for the log.
struct OpStatus {
  ErrorCode code = ErrorCode::kOk;
  CUresult result = CUDA_SUCCESS;
  std::string detail;

  bool ok() const { return code == ErrorCode::kOk; }
  static OpStatus driver(CUresult result, std::string_view call);
  static OpStatus failed(ErrorCode code, std::string detail);
};

struct LaunchTarget {
  const KernelFunctions* kernels = nullptr;
  CUstream stream = nullptr;
  cublasHandle_t* blas = nullptr;  // the queue's handle, created on first gemm
  std::uint32_t generation = 0;    // of the current context
  unsigned max_blocks = 1;         // grid size cap (grid-stride loops cover the rest)
};

// Whether the kernel reports data faults through a status word.
bool needs_status_slot(KernelId kernel);

OpStatus launch_builtin(const LaunchTarget& target, const Launch& launch, const StatusSlot* slot);

}  // namespace malv::accel::cuda
