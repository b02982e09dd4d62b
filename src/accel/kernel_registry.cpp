// The built-in kernels: signatures, parameter names and bounds rules.
//
// Every bounds rule derives, from the declared shapes alone, how many bytes
// each buffer argument is touched from its offset, with checked arithmetic,
// and compares that with the argument's extent. A launch that passes here
// cannot make a backend read or write outside the buffers it names.
#include "accel/kernel_registry.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "accel/kernel_ids.h"

namespace malv::accel {
namespace {

constexpr std::uint64_t kElementBytes = 4;  // float32 data and int32 labels alike
constexpr std::int64_t kMaxBlasDim = std::numeric_limits<std::int32_t>::max();

using K = ArgKind;
constexpr K B = K::kBuffer;
constexpr K I = K::kI64;
constexpr K F = K::kF32;
using BK = BuiltinKernel;

std::string_view kind_name(ArgKind kind) {
  switch (kind) {
    case ArgKind::kBuffer: return "buffer";
    case ArgKind::kI64: return "i64";
    case ArgKind::kF32: return "f32";
  }
  return "unknown";
}

// The checks one bounds rule is made of; every error names the kernel and
// the parameter so a guest can tell which argument of which launch was bad.
class BoundsCheck {
 public:
  BoundsCheck(BuiltinKernel kernel, std::span<const std::string_view> names,
              std::span<const KernelArgValue> args)
      : kernel_(kernel_name(kernel)), names_(names), args_(args) {}

  // An i64 dimension argument, which must be positive.
  Result<std::uint64_t> dim(std::size_t index) const {
    std::int64_t value = args_[index].i64;
    if (value <= 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: '{}' must be positive, got {}", kernel_, names_[index], value));
    }
    return static_cast<std::uint64_t>(value);
  }

  // A dimension that a BLAS call takes as a 32-bit int as well.
  Result<std::uint64_t> blas_dim(std::size_t index) const {
    MALV_ASSIGN_OR_RETURN(std::uint64_t value, dim(index));
    if (value > static_cast<std::uint64_t>(kMaxBlasDim)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: '{}' is {}, at most {} is supported", kernel_, names_[index],
                               value, kMaxBlasDim));
    }
    return value;
  }

  // An i64 flag, which must be 0 or 1.
  Status flag(std::size_t index) const {
    std::int64_t value = args_[index].i64;
    if (value != 0 && value != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: '{}' must be 0 or 1, got {}", kernel_, names_[index], value));
    }
    return ok_status();
  }

  // Bytes of rows*cols 4-byte elements; `what` names the product in errors.
  Result<std::uint64_t> bytes(std::string_view what, std::uint64_t rows,
                              std::uint64_t cols = 1) const {
    std::uint64_t elements = 0;
    std::uint64_t total = 0;
    if (__builtin_mul_overflow(rows, cols, &elements) ||
        __builtin_mul_overflow(elements, kElementBytes, &total)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: size of '{}' ({} x {} x {} bytes) overflows", kernel_, what,
                               rows, cols, kElementBytes));
    }
    return total;
  }

  // A buffer argument that the kernel touches `needed` bytes of from its
  // offset. Elements are 4 bytes, so the address must be 4-byte aligned too
  // (a GPU faults on a misaligned float access).
  Status buffer(std::size_t index, std::uint64_t needed) const {
    const KernelArgValue& arg = args_[index];
    if (arg.ptr.value % kElementBytes != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: buffer '{}' is not {}-byte aligned (address {:#x})", kernel_,
                               names_[index], kElementBytes, arg.ptr.value));
    }
    if (arg.extent < needed) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("{}: buffer '{}' needs {} bytes from its offset, has {}", kernel_,
                               names_[index], needed, arg.extent));
    }
    return ok_status();
  }

  // An f32 argument that must lie in [low, high).
  Status f32_in(std::size_t index, float low, float high) const {
    float value = args_[index].f32;
    if (!(value >= low && value < high)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("{}: '{}' must be in [{}, {}), got {}", kernel_, names_[index], low,
                               high, value));
    }
    return ok_status();
  }

 private:
  std::string_view kernel_;
  std::span<const std::string_view> names_;
  std::span<const KernelArgValue> args_;
};

// Signatures and parameter names, one pair per kernel.
constexpr std::array<ArgKind, 0> kNopKinds{};
constexpr std::array<std::string_view, 0> kNopNames{};
constexpr std::array kGemmKinds{B, B, B, I, I, I, I, I, F, F};
constexpr std::array<std::string_view, 10> kGemmNames{"a", "b",       "c",       "m",     "n",
                                                      "k", "trans_a", "trans_b", "alpha", "beta"};
constexpr std::array kAddKinds{B, B, B, I};
constexpr std::array<std::string_view, 4> kAddNames{"x", "y", "out", "n"};
constexpr std::array kScaleKinds{B, B, I, F};
constexpr std::array<std::string_view, 4> kScaleNames{"x", "out", "n", "alpha"};
constexpr std::array kAxpyKinds{B, B, I, F};
constexpr std::array<std::string_view, 4> kAxpyNames{"x", "y", "n", "alpha"};
constexpr std::array kBiasAddKinds{B, B, I, I};
constexpr std::array<std::string_view, 4> kBiasAddNames{"x", "bias", "rows", "cols"};
constexpr std::array kReluKinds{B, B, I};
constexpr std::array<std::string_view, 3> kReluNames{"x", "out", "n"};
constexpr std::array kReluBackwardKinds{B, B, B, I};
constexpr std::array<std::string_view, 4> kReluBackwardNames{"grad_out", "x", "grad_in", "n"};
constexpr std::array kSoftmaxXentKinds{B, B, B, B, I, I};
constexpr std::array<std::string_view, 6> kSoftmaxXentNames{"logits", "labels", "probs",
                                                            "loss",   "rows",   "cols"};
constexpr std::array kSoftmaxXentBackwardKinds{B, B, B, I, I};
constexpr std::array<std::string_view, 5> kSoftmaxXentBackwardNames{"probs", "labels", "grad",
                                                                    "rows", "cols"};
constexpr std::array kSumRowsKinds{B, B, I, I};
constexpr std::array<std::string_view, 4> kSumRowsNames{"x", "out", "rows", "cols"};
constexpr std::array kAdamStepKinds{B, B, B, B, I, F, F, F, F, I};
constexpr std::array<std::string_view, 10> kAdamStepNames{"param", "grad",  "m",     "v",   "n",
                                                          "lr",    "beta1", "beta2", "eps", "step"};
constexpr std::array kSgdStepKinds{B, B, I, F};
constexpr std::array<std::string_view, 4> kSgdStepNames{"param", "grad", "n", "lr"};
constexpr std::array kFillKinds{B, I, F};
constexpr std::array<std::string_view, 3> kFillNames{"x", "n", "value"};
constexpr std::array kArgmaxRowsKinds{B, B, I, I};
constexpr std::array<std::string_view, 4> kArgmaxRowsNames{"x", "out", "rows", "cols"};

Status check_nop(std::span<const KernelArgValue>) { return ok_status(); }

Status check_gemm(std::span<const KernelArgValue> args) {
  BoundsCheck c(BK::kGemm, kGemmNames, args);
  MALV_ASSIGN_OR_RETURN(std::uint64_t m, c.blas_dim(3));
  MALV_ASSIGN_OR_RETURN(std::uint64_t n, c.blas_dim(4));
  MALV_ASSIGN_OR_RETURN(std::uint64_t k, c.blas_dim(5));
  MALV_TRY(c.flag(6));
  MALV_TRY(c.flag(7));
  MALV_ASSIGN_OR_RETURN(std::uint64_t a_bytes, c.bytes("a", m, k));
  MALV_ASSIGN_OR_RETURN(std::uint64_t b_bytes, c.bytes("b", k, n));
  MALV_ASSIGN_OR_RETURN(std::uint64_t c_bytes, c.bytes("c", m, n));
  MALV_TRY(c.buffer(0, a_bytes));
  MALV_TRY(c.buffer(1, b_bytes));
  return c.buffer(2, c_bytes);
}

// Kernels over n elements whose buffer parameters all hold n floats.
template <std::size_t kDimIndex, std::size_t kBuffers>
Status check_elementwise(const BoundsCheck& c) {
  MALV_ASSIGN_OR_RETURN(std::uint64_t n, c.dim(kDimIndex));
  MALV_ASSIGN_OR_RETURN(std::uint64_t bytes, c.bytes("n", n));
  for (std::size_t i = 0; i < kBuffers; ++i) MALV_TRY(c.buffer(i, bytes));
  return ok_status();
}

Status check_add(std::span<const KernelArgValue> args) {
  return check_elementwise<3, 3>(BoundsCheck(BK::kAdd, kAddNames, args));
}
Status check_scale(std::span<const KernelArgValue> args) {
  return check_elementwise<2, 2>(BoundsCheck(BK::kScale, kScaleNames, args));
}
Status check_axpy(std::span<const KernelArgValue> args) {
  return check_elementwise<2, 2>(BoundsCheck(BK::kAxpy, kAxpyNames, args));
}
Status check_relu(std::span<const KernelArgValue> args) {
  return check_elementwise<2, 2>(BoundsCheck(BK::kRelu, kReluNames, args));
}
Status check_relu_backward(std::span<const KernelArgValue> args) {
  return check_elementwise<3, 3>(BoundsCheck(BK::kReluBackward, kReluBackwardNames, args));
}
Status check_sgd_step(std::span<const KernelArgValue> args) {
  return check_elementwise<2, 2>(BoundsCheck(BK::kSgdStep, kSgdStepNames, args));
}
Status check_fill(std::span<const KernelArgValue> args) {
  return check_elementwise<1, 1>(BoundsCheck(BK::kFill, kFillNames, args));
}

Status check_bias_add(std::span<const KernelArgValue> args) {
  BoundsCheck c(BK::kBiasAdd, kBiasAddNames, args);
  MALV_ASSIGN_OR_RETURN(std::uint64_t rows, c.dim(2));
  MALV_ASSIGN_OR_RETURN(std::uint64_t cols, c.dim(3));
  MALV_ASSIGN_OR_RETURN(std::uint64_t x_bytes, c.bytes("x", rows, cols));
  MALV_ASSIGN_OR_RETURN(std::uint64_t bias_bytes, c.bytes("bias", cols));
  MALV_TRY(c.buffer(0, x_bytes));
  return c.buffer(1, bias_bytes);
}

Status check_softmax_xent(std::span<const KernelArgValue> args) {
  BoundsCheck c(BK::kSoftmaxXent, kSoftmaxXentNames, args);
  MALV_ASSIGN_OR_RETURN(std::uint64_t rows, c.dim(4));
  MALV_ASSIGN_OR_RETURN(std::uint64_t cols, c.dim(5));
  MALV_ASSIGN_OR_RETURN(std::uint64_t matrix_bytes, c.bytes("logits", rows, cols));
  MALV_ASSIGN_OR_RETURN(std::uint64_t label_bytes, c.bytes("labels", rows));
  MALV_TRY(c.buffer(0, matrix_bytes));
  MALV_TRY(c.buffer(1, label_bytes));
  MALV_TRY(c.buffer(2, matrix_bytes));
  return c.buffer(3, kElementBytes);
}

Status check_softmax_xent_backward(std::span<const KernelArgValue> args) {
  BoundsCheck c(BK::kSoftmaxXentBackward, kSoftmaxXentBackwardNames, args);
  MALV_ASSIGN_OR_RETURN(std::uint64_t rows, c.dim(3));
  MALV_ASSIGN_OR_RETURN(std::uint64_t cols, c.dim(4));
  MALV_ASSIGN_OR_RETURN(std::uint64_t matrix_bytes, c.bytes("probs", rows, cols));
  MALV_ASSIGN_OR_RETURN(std::uint64_t label_bytes, c.bytes("labels", rows));
  MALV_TRY(c.buffer(0, matrix_bytes));
  MALV_TRY(c.buffer(1, label_bytes));
  return c.buffer(2, matrix_bytes);
}

// x is rows x cols; out holds `out_elements(rows, cols)` 4-byte elements.
Status check_rows_to(const BoundsCheck& c, bool out_per_row) {
  MALV_ASSIGN_OR_RETURN(std::uint64_t rows, c.dim(2));
  MALV_ASSIGN_OR_RETURN(std::uint64_t cols, c.dim(3));
  MALV_ASSIGN_OR_RETURN(std::uint64_t x_bytes, c.bytes("x", rows, cols));
  MALV_ASSIGN_OR_RETURN(std::uint64_t out_bytes, c.bytes("out", out_per_row ? rows : cols));
  MALV_TRY(c.buffer(0, x_bytes));
  return c.buffer(1, out_bytes);
}

Status check_sum_rows(std::span<const KernelArgValue> args) {
  return check_rows_to(BoundsCheck(BK::kSumRows, kSumRowsNames, args), /*out_per_row=*/false);
}
Status check_argmax_rows(std::span<const KernelArgValue> args) {
  return check_rows_to(BoundsCheck(BK::kArgmaxRows, kArgmaxRowsNames, args),
                       /*out_per_row=*/true);
}

Status check_adam_step(std::span<const KernelArgValue> args) {
  BoundsCheck c(BK::kAdamStep, kAdamStepNames, args);
  MALV_TRY((check_elementwise<4, 4>(c)));
  // Bias correction divides by 1 - beta^step: beta must be below 1, step at least 1.
  MALV_TRY(c.f32_in(6, 0.0f, 1.0f));
  MALV_TRY(c.f32_in(7, 0.0f, 1.0f));
  if (args[9].i64 < 1) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("adam_step: 'step' must be at least 1, got {}", args[9].i64));
  }
  return ok_status();
}

template <typename Kinds, typename Names>
constexpr KernelDef def(BuiltinKernel id, const Kinds& kinds, const Names& names,
                        Status (*check)(std::span<const KernelArgValue>)) {
  static_assert(std::tuple_size_v<Kinds> == std::tuple_size_v<Names>);
  static_assert(std::tuple_size_v<Kinds> <= kMaxKernelArgs);
  return KernelDef{kernel_id(id), kernel_name(id), kinds, names, check};
}

const std::array<KernelDef, kBuiltinKernelCount> kKernels{{
    def(BK::kNop, kNopKinds, kNopNames, check_nop),
    def(BK::kGemm, kGemmKinds, kGemmNames, check_gemm),
    def(BK::kAdd, kAddKinds, kAddNames, check_add),
    def(BK::kScale, kScaleKinds, kScaleNames, check_scale),
    def(BK::kAxpy, kAxpyKinds, kAxpyNames, check_axpy),
    def(BK::kBiasAdd, kBiasAddKinds, kBiasAddNames, check_bias_add),
    def(BK::kRelu, kReluKinds, kReluNames, check_relu),
    def(BK::kReluBackward, kReluBackwardKinds, kReluBackwardNames, check_relu_backward),
    def(BK::kSoftmaxXent, kSoftmaxXentKinds, kSoftmaxXentNames, check_softmax_xent),
    def(BK::kSoftmaxXentBackward, kSoftmaxXentBackwardKinds, kSoftmaxXentBackwardNames,
        check_softmax_xent_backward),
    def(BK::kSumRows, kSumRowsKinds, kSumRowsNames, check_sum_rows),
    def(BK::kAdamStep, kAdamStepKinds, kAdamStepNames, check_adam_step),
    def(BK::kSgdStep, kSgdStepKinds, kSgdStepNames, check_sgd_step),
    def(BK::kFill, kFillKinds, kFillNames, check_fill),
    def(BK::kArgmaxRows, kArgmaxRowsKinds, kArgmaxRowsNames, check_argmax_rows),
}};

}  // namespace

std::span<const KernelDef> all_kernels() { return kKernels; }

const KernelDef* find_kernel(std::string_view name) {
  for (const KernelDef& kernel : kKernels) {
    if (kernel.name == name) return &kernel;
  }
  return nullptr;
}

const KernelDef* find_kernel(KernelId id) {
  if (id.value() == 0 || id.value() > kKernels.size()) return nullptr;
  return &kKernels[id.value() - 1];
}

Status validate_launch(const KernelDef& kernel, std::span<const KernelArgValue> args) {
  if (args.size() != kernel.params.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("kernel '{}' expects {} arguments, got {}", kernel.name,
                             kernel.params.size(), args.size()));
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i].kind != kernel.params[i]) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("kernel '{}' parameter {} ('{}') expects {}, got {}", kernel.name, i,
                      kernel.param_names[i], kind_name(kernel.params[i]), kind_name(args[i].kind)));
    }
  }
  return kernel.check_bounds(args);
}

}  // namespace malv::accel
