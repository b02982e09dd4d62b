#include "accel/cuda/cuda_context.h"

#include <fmt/format.h>

#include <array>
#include <utility>

#include "accel/cuda/cuda_errors.h"
#include "base/log.h"

namespace malv::accel::cuda {
namespace {

// Errors that mean "this host has no usable CUDA device" get the prefix
// the backend factory and the tests look for.
Error no_device(CUresult result, std::string_view call) {
  std::string text = cu_error_text(result, call);
  if (result == CUDA_ERROR_STUB_LIBRARY) {
    text += ": libcuda.so.1 is the CUDA toolkit's stub, not an NVIDIA driver";
  }
  return Error(ErrorCode::kUnavailable, "no CUDA device: " + text);
}

Result<int> attribute(CUdevice device, CUdevice_attribute which, std::string_view name) {
  int value = 0;
  const CUresult r = cuDeviceGetAttribute(&value, which, device);
  if (r != CUDA_SUCCESS) return cu_error(r, fmt::format("cuDeviceGetAttribute({})", name));
  return value;
}

}  // namespace

Result<std::unique_ptr<CudaContext>> CudaContext::create(int ordinal,
                                                         std::uint64_t pool_release_threshold) {
  CUresult r = cuInit(0);
  if (r != CUDA_SUCCESS) return no_device(r, "cuInit");
  int count = 0;
  r = cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS) return no_device(r, "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= count) {
    return Error(
        ErrorCode::kUnavailable,
        fmt::format("no CUDA device: device {} was asked for, {} present", ordinal, count));
  }
  std::unique_ptr<CudaContext> context(new CudaContext());
  context->pool_release_threshold_ = pool_release_threshold;
  DeviceProperties& p = context->properties_;
  p.ordinal = ordinal;
  r = cuDeviceGet(&context->device_, ordinal);
  if (r != CUDA_SUCCESS) return no_device(r, "cuDeviceGet");
  const CUdevice device = context->device_;

  std::array<char, 256> name{};
  r = cuDeviceGetName(name.data(), static_cast<int>(name.size()), device);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuDeviceGetName");
  p.name = name.data();
  std::size_t total = 0;
  r = cuDeviceTotalMem(&total, device);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuDeviceTotalMem");
  p.total_memory = total;
  MALV_ASSIGN_OR_RETURN(p.multiprocessors,
                        attribute(device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "SMs"));
  MALV_ASSIGN_OR_RETURN(p.compute_major,
                        attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "major"));
  MALV_ASSIGN_OR_RETURN(p.compute_minor,
                        attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "minor"));
  MALV_ASSIGN_OR_RETURN(int pools,
                        attribute(device, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, "pools"));
  p.memory_pools = pools != 0;

  // The primary context: shared with every other user of this device in
  // the process (cuBLAS's runtime included), so all VMs' streams live in
  // one context and run concurrently instead of time-slicing contexts.
  r = cuDevicePrimaryCtxRetain(&context->context_, device);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuDevicePrimaryCtxRetain");
  context->retained_ = true;
  MALV_TRY(context->bind());
  r = cuCtxGetStreamPriorityRange(&p.least_priority, &p.greatest_priority);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuCtxGetStreamPriorityRange");
  MALV_TRY(context->load());
  return context;
}

CudaContext::~CudaContext() {
  if (!retained_) return;
  if (bind().ok()) unload();
  (void)cuDevicePrimaryCtxRelease(device_);
}

Status CudaContext::bind() const {
  const CUresult r = cuCtxSetCurrent(context_);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuCtxSetCurrent");
  return ok_status();
}

Status CudaContext::load() {
  CUresult r = cuModuleLoadData(&module_, kKernelFatbin);
  if (r != CUDA_SUCCESS) {
    Error error = cu_error(r, "cuModuleLoadData");
    if (r == CUDA_ERROR_NO_BINARY_FOR_GPU || r == CUDA_ERROR_INVALID_PTX ||
        r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
      error.with_context(fmt::format(
          "the kernels are built for sm_80 and sm_90 with compute_90 PTX; {} is sm_{}{}",
          properties_.name, properties_.compute_major, properties_.compute_minor));
    }
    module_ = nullptr;
    return error;
  }
  const std::pair<const char*, CUfunction*> functions[] = {
      {"malv_nop", &kernels_.nop},
      {"malv_add", &kernels_.add},
      {"malv_scale", &kernels_.scale},
      {"malv_axpy", &kernels_.axpy},
      {"malv_bias_add", &kernels_.bias_add},
      {"malv_relu", &kernels_.relu},
      {"malv_relu_backward", &kernels_.relu_backward},
      {"malv_check_labels", &kernels_.check_labels},
      {"malv_softmax_xent_probs", &kernels_.softmax_xent_probs},
      {"malv_softmax_xent_loss", &kernels_.softmax_xent_loss},
      {"malv_softmax_xent_backward", &kernels_.softmax_xent_backward},
      {"malv_sum_rows", &kernels_.sum_rows},
      {"malv_adam_step", &kernels_.adam_step},
      {"malv_sgd_step", &kernels_.sgd_step},
      {"malv_fill", &kernels_.fill},
      {"malv_argmax_rows", &kernels_.argmax_rows},
  };
  for (const auto& [name, function] : functions) {
    r = cuModuleGetFunction(function, module_, name);
    if (r != CUDA_SUCCESS) return cu_error(r, fmt::format("cuModuleGetFunction({})", name));
  }

  if (properties_.memory_pools) {
    CUmemPoolProps props{};
    props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
    props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = properties_.ordinal;
    r = cuMemPoolCreate(&pool_, &props);
    if (r == CUDA_SUCCESS) {
      // Freed memory stays in the pool up to the threshold, so a VM that
      // frees and allocates again does not go back to the driver.
      cuuint64_t threshold = pool_release_threshold_;
      r = cuMemPoolSetAttribute(pool_, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold);
      if (r != CUDA_SUCCESS) return cu_error(r, "cuMemPoolSetAttribute(release threshold)");
    } else {
      // Some virtualised devices report pools but cannot make one.
      log::warn("accel", "cuda: {}; device memory comes from cuMemAlloc instead",
                cu_error_text(r, "cuMemPoolCreate"));
      pool_ = nullptr;
    }
  }
  r = cuStreamCreate(&alloc_stream_, CU_STREAM_NON_BLOCKING);
  if (r != CUDA_SUCCESS) {
    alloc_stream_ = nullptr;
    return cu_error(r, "cuStreamCreate(allocations)");
  }
  return ok_status();
}

void CudaContext::unload() {
  if (alloc_stream_ != nullptr) (void)cuStreamDestroy(alloc_stream_);
  if (pool_ != nullptr) (void)cuMemPoolDestroy(pool_);
  if (module_ != nullptr) (void)cuModuleUnload(module_);
  alloc_stream_ = nullptr;
  pool_ = nullptr;
  module_ = nullptr;
  kernels_ = {};
}

Status CudaContext::rebuild() {
  // The reset frees every handle below; they must not be destroyed again.
  alloc_stream_ = nullptr;
  pool_ = nullptr;
  module_ = nullptr;
  kernels_ = {};
  CUresult r = cuDevicePrimaryCtxReset(device_);
  if (r != CUDA_SUCCESS) return cu_error(r, "cuDevicePrimaryCtxReset");
  // Resetting does not release: take a fresh reference (the handle may
  // differ), then drop the one held on the old context.
  CUcontext fresh = nullptr;
  r = cuDevicePrimaryCtxRetain(&fresh, device_);
  if (r != CUDA_SUCCESS) {
    retained_ = false;
    (void)cuDevicePrimaryCtxRelease(device_);
    return cu_error(r, "cuDevicePrimaryCtxRetain");
  }
  (void)cuDevicePrimaryCtxRelease(device_);
  context_ = fresh;
  MALV_TRY(bind());
  return load();
}

}  // namespace malv::accel::cuda
