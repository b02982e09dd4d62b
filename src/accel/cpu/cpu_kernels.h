// The built-in kernels on the host CPU: what the CPU backend's workers call
// for a Launch op. Arguments were validated against the registry before the
// launch was queued, so device pointers are plain host addresses with room
// for every access, whatever the arguments alias. Only faults that depend on
// data (a label out of range) are found here, where the label is used: each
// label is read once from device memory, checked, and only that checked copy
// indexes anything (cpu_kernels.cpp). They are reported as the op's status.
//
//   ErrorCode status = run_cpu_kernel(launch.kernel, {launch.args.data(), launch.argc});
#pragma once

#include <span>

#include "accel/kernel_registry.h"
#include "malv/error.h"

namespace malv::accel::cpu {

// Runs one kernel to completion on the calling thread.
ErrorCode run_cpu_kernel(KernelId kernel, std::span<const KernelArgValue> args);

// gemm through OpenBLAS (cpu_gemm.cpp).
void run_cpu_gemm(std::span<const KernelArgValue> args);

// Sets how many threads OpenBLAS may use inside one gemm, given how many
// backend workers may be running gemms at once (cpu_gemm.cpp says why).
void configure_blas_threads(unsigned backend_workers);

}  // namespace malv::accel::cpu
