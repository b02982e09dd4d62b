// The plugin's entry points (cuda_plugin.h): creating a CudaBackend, and
// the direct-cuBLAS baseline that `malv bench cuda` compares VMs against.
// Only these three symbols are exported (hidden visibility otherwise); no
// exception leaves them.
#include "accel/cuda/cuda_plugin.h"

#include <cublas_v2.h>
#include <cuda.h>

#include <algorithm>
#include <bit>
#include <exception>
#include <vector>

#include "accel/cuda/cuda_backend.h"
#include "accel/cuda/cuda_context.h"
#include "accel/cuda/cuda_errors.h"
#include "base/clock.h"
#include "base/log.h"

namespace malv::accel::cuda {
namespace {

// Everything the baseline holds, released however it ends.
struct BaselineResources {
  CUstream stream = nullptr;
  cublasHandle_t blas = nullptr;
  CUdeviceptr a = 0, b = 0, c = 0, transfer = 0;
  void* pinned = nullptr;

  ~BaselineResources() {
    if (stream != nullptr) (void)cuStreamSynchronize(stream);
    if (blas != nullptr) (void)cublasDestroy(blas);
    for (CUdeviceptr ptr : {a, b, c, transfer}) {
      if (ptr != 0) (void)cuMemFree(ptr);
    }
    if (pinned != nullptr) (void)cuMemFreeHost(pinned);
    if (stream != nullptr) (void)cuStreamDestroy(stream);
  }
};

#define MALV_CU(call)                          \
  do {                                         \
    const CUresult malv_cu_result_ = (call);   \
    if (malv_cu_result_ != CUDA_SUCCESS) {     \
      return cu_error(malv_cu_result_, #call); \
    }                                          \
  } while (false)

Status sgemm(cublasHandle_t blas, int dim, CUdeviceptr a, CUdeviceptr b, CUdeviceptr c) {
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const cublasStatus_t s = cublasSgemm(
      blas, CUBLAS_OP_N, CUBLAS_OP_N, dim, dim, dim, &alpha, reinterpret_cast<const float*>(b), dim,
      reinterpret_cast<const float*>(a), dim, &beta, reinterpret_cast<float*>(c), dim);
  if (s != CUBLAS_STATUS_SUCCESS) {
    return Error(cublas_error_code(s),
                 std::string("cublasSgemm: ") + std::string(cublas_status_name(s)));
  }
  return ok_status();
}

// Median GB/s of `repeats` copies of `bytes` done by `copy` then a sync.
template <typename Copy>
Result<double> median_gbps(int repeats, std::uint64_t bytes, CUstream stream, Copy&& copy) {
  std::vector<double> rates;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    Stopwatch watch;
    MALV_CU(copy());
    MALV_CU(cuStreamSynchronize(stream));
    rates.push_back(static_cast<double>(bytes) / watch.elapsed_s() / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

Result<CudaBaseline> run_baseline(const CudaBaselineRequest& request) {
  MALV_ASSIGN_OR_RETURN(std::unique_ptr<CudaContext> context,
                        CudaContext::create(request.device, 0));
  CudaBaseline out;
  out.device = context->properties().name;
  BaselineResources r;
  MALV_CU(cuStreamCreate(&r.stream, CU_STREAM_NON_BLOCKING));

  const auto dim = static_cast<int>(request.gemm_dim);
  const std::size_t elements = static_cast<std::size_t>(dim) * static_cast<std::size_t>(dim);
  MALV_CU(cuMemAlloc(&r.a, elements * sizeof(float)));
  MALV_CU(cuMemAlloc(&r.b, elements * sizeof(float)));
  MALV_CU(cuMemAlloc(&r.c, elements * sizeof(float)));
  // Values do not change sgemm's speed, but denormals or NaNs could.
  MALV_CU(cuMemsetD32Async(r.a, std::bit_cast<unsigned>(0.01f), elements, r.stream));
  MALV_CU(cuMemsetD32Async(r.b, std::bit_cast<unsigned>(0.02f), elements, r.stream));
  const cublasStatus_t created = cublasCreate(&r.blas);
  if (created != CUBLAS_STATUS_SUCCESS) {
    r.blas = nullptr;
    return Error(cublas_error_code(created),
                 std::string("cublasCreate: ") + std::string(cublas_status_name(created)));
  }
  if (cublasSetStream(r.blas, r.stream) != CUBLAS_STATUS_SUCCESS) {
    return Error(ErrorCode::kInternal, "cublasSetStream failed");
  }
  for (int i = 0; i < 2; ++i) MALV_TRY(sgemm(r.blas, dim, r.a, r.b, r.c));  // warm up
  MALV_CU(cuStreamSynchronize(r.stream));
  const int iterations = std::max(1, request.gemm_iterations);
  Stopwatch watch;
  for (int i = 0; i < iterations; ++i) MALV_TRY(sgemm(r.blas, dim, r.a, r.b, r.c));
  MALV_CU(cuStreamSynchronize(r.stream));
  out.gemm_ms = watch.elapsed_s() * 1e3 / iterations;

  const std::uint64_t bytes = request.transfer_bytes;
  MALV_CU(cuMemAlloc(&r.transfer, bytes));
  MALV_CU(cuMemHostAlloc(&r.pinned, bytes, 0));
  std::fill_n(static_cast<unsigned char*>(r.pinned), bytes, static_cast<unsigned char>(1));
  // First touch of both sides, outside the timing.
  MALV_CU(cuMemcpyHtoDAsync(r.transfer, r.pinned, bytes, r.stream));
  MALV_CU(cuStreamSynchronize(r.stream));
  MALV_ASSIGN_OR_RETURN(out.h2d_pinned_gbps,
                        median_gbps(request.transfer_repeats, bytes, r.stream, [&] {
                          return cuMemcpyHtoDAsync(r.transfer, r.pinned, bytes, r.stream);
                        }));
  MALV_ASSIGN_OR_RETURN(out.d2h_pinned_gbps,
                        median_gbps(request.transfer_repeats, bytes, r.stream, [&] {
                          return cuMemcpyDtoHAsync(r.pinned, r.transfer, bytes, r.stream);
                        }));
  return out;
}

#undef MALV_CU

}  // namespace
}  // namespace malv::accel::cuda

using malv::Error;
using malv::ErrorCode;
using malv::Result;
using malv::accel::Backend;
using malv::accel::CudaBaseline;
using malv::accel::CudaBaselineRequest;
using malv::accel::CudaPluginOptions;

extern "C" {

[[gnu::visibility("default")]] std::uint32_t malv_cuda_plugin_abi() {
  return malv::accel::kCudaPluginAbi;
}

[[gnu::visibility("default")]] void malv_cuda_create_backend(
    const CudaPluginOptions* options, Result<std::unique_ptr<Backend>>* out) {
  try {
    // The plugin has its own copy of the logger; follow the host's level.
    malv::log::set_level(static_cast<malv::log::Level>(options->log_level));
    auto backend = malv::accel::cuda::CudaBackend::create(options->backend);
    if (!backend.ok()) {
      *out = std::move(backend).error();
      return;
    }
    *out = std::unique_ptr<Backend>(std::move(backend).value());
  } catch (const std::exception& e) {
    *out = Error(ErrorCode::kInternal, std::string("cuda backend: ") + e.what());
  }
}

[[gnu::visibility("default")]] void malv_cuda_run_baseline(const CudaBaselineRequest* request,
                                                           Result<CudaBaseline>* out) {
  try {
    *out = malv::accel::cuda::run_baseline(*request);
  } catch (const std::exception& e) {
    *out = Error(ErrorCode::kInternal, std::string("cuda baseline: ") + e.what());
  }
}

}  // extern "C"
