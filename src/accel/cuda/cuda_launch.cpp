#include "accel/cuda/cuda_launch.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "accel/cuda/cuda_allocations.h"
#include "accel/cuda/cuda_errors.h"
#include "accel/kernel_args.h"
#include "accel/kernel_ids.h"

namespace malv::accel::cuda {
namespace {

constexpr unsigned kThreads = 256;      // per block, every kernel
constexpr unsigned kLossThreads = 256;  // cuda_kernels.cu: one block of exactly this many
constexpr unsigned kWarp = 32;

using Args = KernelArgs;

unsigned blocks_for(std::uint64_t items, unsigned per_block, unsigned max_blocks) {
  const std::uint64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<std::uint64_t>(blocks, 1, max_blocks));
}

// One kernel launch: the parameters are addresses of values whose types
// match the kernel's signature (CUdeviceptr for pointers, long long for
// i64, float for f32).
class KernelCall {
 public:
  KernelCall(const LaunchTarget& target, CUfunction function, std::string_view name)
      : target_(target), function_(function), name_(name) {}

  // A buffer argument's device address, if it belongs to this generation.
  bool buffer(const KernelArgValue& arg, CUdeviceptr* out) {
    if (generation_of(arg.ptr) != target_.generation) {
      stale_ = true;
      return false;
    }
    *out = address_of(arg.ptr);
    return true;
  }

  OpStatus run(unsigned blocks, unsigned threads, std::span<void*> params) const {
    if (stale_) {
      return OpStatus::failed(
          ErrorCode::kDeviceReset,
          fmt::format("{}: a buffer is from before the last device reset", name_));
    }
    const CUresult r = cuLaunchKernel(function_, blocks, 1, 1, threads, 1, 1, 0, target_.stream,
                                      params.data(), nullptr);
    if (r != CUDA_SUCCESS) return OpStatus::driver(r, fmt::format("cuLaunchKernel({})", name_));
    return {};
  }

 private:
  const LaunchTarget& target_;
  CUfunction function_;
  std::string_view name_;
  bool stale_ = false;
};

long long i64(const KernelArgValue& arg) { return static_cast<long long>(arg.i64); }

// Kernels over n elements: (buffers..., n, floats...).
template <std::size_t kBuffers, std::size_t kFloats>
OpStatus elementwise(const LaunchTarget& t, CUfunction f, std::string_view name, Args a) {
  KernelCall call(t, f, name);
  std::array<CUdeviceptr, kBuffers> buffers{};
  for (std::size_t i = 0; i < kBuffers; ++i) call.buffer(a[i], &buffers[i]);
  long long n = i64(a[kBuffers]);
  std::array<float, kFloats> floats{};
  for (std::size_t i = 0; i < kFloats; ++i) floats[i] = a[kBuffers + 1 + i].f32;
  std::array<void*, kBuffers + 1 + kFloats> params{};
  for (std::size_t i = 0; i < kBuffers; ++i) params[i] = &buffers[i];
  params[kBuffers] = &n;
  for (std::size_t i = 0; i < kFloats; ++i) params[kBuffers + 1 + i] = &floats[i];
  return call.run(blocks_for(static_cast<std::uint64_t>(n), kThreads, t.max_blocks), kThreads,
                  params);
}

// Kernels over a rows x cols matrix: (x, other, rows, cols), one thread per
// element, per row or per column.
enum class Per { kElement, kRow, kColumn };

OpStatus matrix(const LaunchTarget& t, CUfunction f, std::string_view name, Args a, Per per) {
  KernelCall call(t, f, name);
  CUdeviceptr x = 0;
  CUdeviceptr other = 0;
  call.buffer(a[0], &x);
  call.buffer(a[1], &other);
  long long rows = i64(a[2]);
  long long cols = i64(a[3]);
  std::array<void*, 4> params{&x, &other, &rows, &cols};
  const auto r = static_cast<std::uint64_t>(rows);
  const auto c = static_cast<std::uint64_t>(cols);
  const std::uint64_t items = per == Per::kRow ? r : per == Per::kColumn ? c : r * c;
  return call.run(blocks_for(items, kThreads, t.max_blocks), kThreads, params);
}

OpStatus check_labels(const LaunchTarget& t, const KernelArgValue& labels_arg, long long rows,
                      long long cols, CUdeviceptr status) {
  KernelCall call(t, t.kernels->check_labels, "check_labels");
  CUdeviceptr labels = 0;
  call.buffer(labels_arg, &labels);
  std::array<void*, 4> params{&labels, &rows, &cols, &status};
  return call.run(blocks_for(static_cast<std::uint64_t>(rows), kThreads, t.max_blocks), kThreads,
                  params);
}

// softmax_xent(logits, labels, probs, loss, rows, cols): the loss (one
// block) runs first and checks each label where it uses it; the
// probabilities (a warp per row, no labels) do nothing if it found a bad
// one. No separate check kernel: the loss kernel is the only user of the
// labels and comes before any other write.
OpStatus softmax_xent(const LaunchTarget& t, Args a, const StatusSlot& slot) {
  long long rows = i64(a[4]);
  long long cols = i64(a[5]);
  CUdeviceptr status = slot.device;

  KernelCall loss_call(t, t.kernels->softmax_xent_loss, "softmax_xent");
  CUdeviceptr logits = 0, labels = 0, probs = 0, loss = 0;
  loss_call.buffer(a[0], &logits);
  loss_call.buffer(a[1], &labels);
  loss_call.buffer(a[3], &loss);
  std::array<void*, 6> loss_params{&logits, &labels, &loss, &rows, &cols, &status};
  OpStatus done = loss_call.run(1, kLossThreads, loss_params);
  if (!done.ok()) return done;

  KernelCall probs_call(t, t.kernels->softmax_xent_probs, "softmax_xent");
  probs_call.buffer(a[2], &probs);
  std::array<void*, 5> probs_params{&logits, &probs, &rows, &cols, &status};
  const unsigned rows_per_block = kThreads / kWarp;
  return probs_call.run(blocks_for(static_cast<std::uint64_t>(rows), rows_per_block, t.max_blocks),
                        kThreads, probs_params);
}

// softmax_xent_backward(probs, labels, grad, rows, cols): a check kernel
// first, so that bad labels leave grad untouched, and the kernel checks
// each label again where it uses it (cuda_kernels.cu says why).
OpStatus softmax_xent_backward(const LaunchTarget& t, Args a, const StatusSlot& slot) {
  long long rows = i64(a[3]);
  long long cols = i64(a[4]);
  CUdeviceptr status = slot.device;
  OpStatus checked = check_labels(t, a[1], rows, cols, status);
  if (!checked.ok()) return checked;
  KernelCall call(t, t.kernels->softmax_xent_backward, "softmax_xent_backward");
  CUdeviceptr probs = 0, labels = 0, grad = 0;
  call.buffer(a[0], &probs);
  call.buffer(a[1], &labels);
  call.buffer(a[2], &grad);
  std::array<void*, 6> params{&probs, &labels, &grad, &rows, &cols, &status};
  const auto items = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols);
  return call.run(blocks_for(items, kThreads, t.max_blocks), kThreads, params);
}

// adam_step(param, grad, m, v, n, lr, beta1, beta2, eps, step): the bias
// corrections are computed here, as the CPU computes them (kernel_args.h).
OpStatus adam_step(const LaunchTarget& t, Args a) {
  KernelCall call(t, t.kernels->adam_step, "adam_step");
  std::array<CUdeviceptr, 4> buffers{};
  for (std::size_t i = 0; i < buffers.size(); ++i) call.buffer(a[i], &buffers[i]);
  long long n = i64(a[4]);
  float lr = a[5].f32;
  float beta1 = a[6].f32;
  float beta2 = a[7].f32;
  float eps = a[8].f32;
  const AdamCorrections corrections = adam_corrections(a);
  float correction1 = corrections.first;
  float correction2 = corrections.second;
  std::array<void*, 11> params{&buffers[0], &buffers[1], &buffers[2],  &buffers[3], &n, &lr, &beta1,
                               &beta2,      &eps,        &correction1, &correction2};
  return call.run(blocks_for(static_cast<std::uint64_t>(n), kThreads, t.max_blocks), kThreads,
                  params);
}

// gemm(a, b, c, m, n, k, trans_a, trans_b, alpha, beta), row-major, through
// column-major cuBLAS: a row-major matrix is its transpose in column-major,
// so C^T = op(B)^T op(A)^T is one sgemm with the operands swapped, and the
// leading dimensions are the CPU backend's.
OpStatus gemm(const LaunchTarget& t, Args a) {
  KernelCall call(t, nullptr, "gemm");
  CUdeviceptr pa = 0, pb = 0, pc = 0;
  const bool fresh_a = call.buffer(a[0], &pa);
  const bool fresh_b = call.buffer(a[1], &pb);
  const bool fresh_c = call.buffer(a[2], &pc);
  if (!fresh_a || !fresh_b || !fresh_c) {
    return OpStatus::failed(ErrorCode::kDeviceReset,
                            "gemm: a buffer is from before the last device reset");
  }
  if (*t.blas == nullptr) {
    cublasHandle_t handle = nullptr;
    cublasStatus_t s = cublasCreate(&handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
      return OpStatus::failed(cublas_error_code(s),
                              fmt::format("cublasCreate: {}", cublas_status_name(s)));
    }
    s = cublasSetStream(handle, t.stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
      (void)cublasDestroy(handle);
      return OpStatus::failed(cublas_error_code(s),
                              fmt::format("cublasSetStream: {}", cublas_status_name(s)));
    }
    *t.blas = handle;
  }
  const GemmArgs g = gemm_args(a);
  const cublasStatus_t s = cublasSgemm(
      *t.blas, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, g.n,
      g.m, g.k, &g.alpha, reinterpret_cast<const float*>(pb), g.ldb,
      reinterpret_cast<const float*>(pa), g.lda, &g.beta, reinterpret_cast<float*>(pc), g.n);
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  // cuBLAS hides the driver's reason; a poisoned context shows on the stream.
  const CUresult stream_state = cuStreamQuery(t.stream);
  if (is_sticky(stream_state)) return OpStatus::driver(stream_state, "cublasSgemm");
  return OpStatus::failed(cublas_error_code(s),
                          fmt::format("cublasSgemm: {}", cublas_status_name(s)));
}

}  // namespace

OpStatus OpStatus::driver(CUresult result, std::string_view call) {
  OpStatus status;
  status.code = cu_error_code(result);
  status.result = result;
  status.detail = cu_error_text(result, call);
  return status;
}

OpStatus OpStatus::failed(ErrorCode code, std::string detail) {
  OpStatus status;
  status.code = code;
  status.detail = std::move(detail);
  return status;
}

bool needs_status_slot(KernelId kernel) {
  const auto id = static_cast<BuiltinKernel>(kernel.value());
  return id == BuiltinKernel::kSoftmaxXent || id == BuiltinKernel::kSoftmaxXentBackward;
}

OpStatus launch_builtin(const LaunchTarget& t, const Launch& launch, const StatusSlot* slot) {
  const std::optional<KernelArgs> args = launch_args(launch);
  if (!args) return OpStatus::failed(ErrorCode::kInvalidArgument, "launch with too many arguments");
  const Args a = *args;
  const KernelFunctions& k = *t.kernels;
  // Kernels with data checks need a slot; the caller provides one for them.
  if (needs_status_slot(launch.kernel) && slot == nullptr) {
    return OpStatus::failed(ErrorCode::kInternal, "label kernel launched without a status word");
  }
  switch (static_cast<BuiltinKernel>(launch.kernel.value())) {
    case BuiltinKernel::kNop: {
      KernelCall call(t, k.nop, "nop");
      return call.run(1, 1, {});
    }
    case BuiltinKernel::kGemm: return gemm(t, a);
    case BuiltinKernel::kAdd: return elementwise<3, 0>(t, k.add, "add", a);
    case BuiltinKernel::kScale: return elementwise<2, 1>(t, k.scale, "scale", a);
    case BuiltinKernel::kAxpy: return elementwise<2, 1>(t, k.axpy, "axpy", a);
    case BuiltinKernel::kBiasAdd: return matrix(t, k.bias_add, "bias_add", a, Per::kElement);
    case BuiltinKernel::kRelu: return elementwise<2, 0>(t, k.relu, "relu", a);
    case BuiltinKernel::kReluBackward:
      return elementwise<3, 0>(t, k.relu_backward, "relu_backward", a);
    case BuiltinKernel::kSoftmaxXent: return softmax_xent(t, a, *slot);
    case BuiltinKernel::kSoftmaxXentBackward: return softmax_xent_backward(t, a, *slot);
    case BuiltinKernel::kSumRows: return matrix(t, k.sum_rows, "sum_rows", a, Per::kColumn);
    case BuiltinKernel::kAdamStep: return adam_step(t, a);
    case BuiltinKernel::kSgdStep: return elementwise<2, 1>(t, k.sgd_step, "sgd_step", a);
    case BuiltinKernel::kFill: return elementwise<1, 1>(t, k.fill, "fill", a);
    case BuiltinKernel::kArgmaxRows: return matrix(t, k.argmax_rows, "argmax_rows", a, Per::kRow);
  }
  return OpStatus::failed(ErrorCode::kNotFound,
                          fmt::format("no kernel with id {}", launch.kernel.value()));
}

}  // namespace malv::accel::cuda
