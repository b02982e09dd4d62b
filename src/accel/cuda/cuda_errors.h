// CUDA driver and cuBLAS results as MaLV-OS errors.
//
// Codes are chosen by what the caller should do next, like every other
// Error: out of memory is kResourceExhausted (free something), a missing
// driver or device is kUnavailable, and a fault that poisons the context
// (an illegal address, a kernel trap, an uncorrectable ECC error) is
// kDeviceReset: the backend rebuilds the context and every object that
// lived on the device is gone.
//
//   CUresult r = cuMemAlloc(&ptr, bytes);
//   if (r != CUDA_SUCCESS) return cu_error(r, "cuMemAlloc");
#pragma once

#include <cublas_v2.h>
#include <cuda.h>

#include <string>
#include <string_view>

#include "malv/error.h"

namespace malv::accel::cuda {

// "CUDA_ERROR_ILLEGAL_ADDRESS" (our own table: the stub driver, where this
// matters most, cannot name its own errors).
std::string_view cu_error_name(CUresult result);

// True when the context is unusable after this error: every later call on
// it fails the same way until it is reset.
bool is_sticky(CUresult result);

ErrorCode cu_error_code(CUresult result);

// "cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
std::string cu_error_text(CUresult result, std::string_view call);
Error cu_error(CUresult result, std::string_view call);

ErrorCode cublas_error_code(cublasStatus_t status);
std::string_view cublas_status_name(cublasStatus_t status);

}  // namespace malv::accel::cuda
