// The seam between malv_accel and the CUDA backend plugin
// (libmalv_accel_cuda.so). No CUDA type appears here: malv_accel includes
// this header whether or not the toolkit was found.
//
// Why a plugin: the plugin is linked against libcuda.so.1 and libcublas, so
// the linker checks every driver and cuBLAS symbol at build time (CI has the
// toolkit's stub driver but no GPU); the `malv` binary and the tests are
// not, so they start on machines with no NVIDIA driver at all. malv_accel
// dlopen()s the plugin the first time a CUDA backend is asked for
// (cuda_plugin_loader.cpp) and never unloads it.
//
// The entry points have C names but C++ arguments: the plugin is built from
// this tree, by the same compiler, in the same build, so the C++ ABI of
// Result, Error and Backend is shared. kCudaPluginAbi is checked on load and
// must change whenever anything here, or a type these functions pass,
// changes shape.
//
//   auto abi = reinterpret_cast<CudaPluginAbiFn>(dlsym(plugin, kCudaPluginAbiSymbol));
//   Result<std::unique_ptr<Backend>> out = Error(ErrorCode::kInternal, "no answer");
//   create(&options, &out);
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "accel/backend.h"
#include "malv/result.h"

namespace malv::accel {

inline constexpr std::uint32_t kCudaPluginAbi = 1;

struct CudaPluginOptions {
  CudaBackendOptions backend;
  int log_level = 2;  // malv::log::Level of the host process, as an int
};

// What `malv bench cuda` compares a VM against: the same work done
// directly in one process with cuBLAS and page-locked host memory.
struct CudaBaselineRequest {
  int device = 0;
  std::int64_t gemm_dim = 4096;  // m = n = k
  int gemm_iterations = 20;      // timed back to back on one stream, after a warm-up
  std::uint64_t transfer_bytes = 64ull << 20;
  int transfer_repeats = 5;  // median of
};

struct CudaBaseline {
  std::string device;
  double gemm_ms = 0;          // per sgemm, host wall time over the timed loop
  double h2d_pinned_gbps = 0;  // cuMemcpyHtoDAsync from cuMemHostAlloc memory
  double d2h_pinned_gbps = 0;
};

extern "C" {
using CudaPluginAbiFn = std::uint32_t (*)();
using CudaCreateBackendFn = void (*)(const CudaPluginOptions* options,
                                     Result<std::unique_ptr<Backend>>* out);
using CudaRunBaselineFn = void (*)(const CudaBaselineRequest* request, Result<CudaBaseline>* out);
}

inline constexpr const char* kCudaPluginAbiSymbol = "malv_cuda_plugin_abi";
inline constexpr const char* kCudaCreateBackendSymbol = "malv_cuda_create_backend";
inline constexpr const char* kCudaRunBaselineSymbol = "malv_cuda_run_baseline";

// Measures the direct-cuBLAS baseline through the plugin (kUnavailable
// without a device). Used by benchmarks only.
[[nodiscard]] Result<CudaBaseline> run_cuda_baseline(const CudaBaselineRequest& request);

}  // namespace malv::accel
