// The built-in kernels every MaLV-OS accelerator provides: their names and
// ids, listed once for the host and the guest.
//
// A guest names a kernel on the wire by its name (wire::Opcode::kKernelLookup
// turns it into a handle), so the ids below are not part of the protocol:
// they are the host registry's order (src/accel/kernel_registry.cpp holds
// each kernel's signature and bounds rule, in this order) and what the
// backends dispatch on. Guest libraries (src/nn) use the same enum to say
// which kernel they mean, and kernel_name() for the name they send.
//
//   std::string_view name = malv::kernel_name(malv::BuiltinKernel::kGemm);  // "gemm"
//   for (std::uint32_t id = 1; id <= malv::kBuiltinKernelCount; ++id) ...
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace malv {

// 1-based, in registry order; 0 is no kernel.
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

// The kernel's registry name ("gemm"); empty for a value that is no kernel.
constexpr std::string_view kernel_name(BuiltinKernel kernel) {
  constexpr std::array<std::string_view, kBuiltinKernelCount> kNames{
      "nop",      "gemm",      "add",           "scale",        "axpy",
      "bias_add", "relu",      "relu_backward", "softmax_xent", "softmax_xent_backward",
      "sum_rows", "adam_step", "sgd_step",      "fill",         "argmax_rows"};
  const std::uint32_t id = static_cast<std::uint32_t>(kernel);
  return id >= 1 && id <= kNames.size() ? kNames[id - 1] : std::string_view{};
}

// Every built-in kernel, in id order.
constexpr std::array<BuiltinKernel, kBuiltinKernelCount> all_builtin_kernels() {
  std::array<BuiltinKernel, kBuiltinKernelCount> kernels{};
  for (std::uint32_t i = 0; i < kBuiltinKernelCount; ++i) {
    kernels[i] = static_cast<BuiltinKernel>(i + 1);
  }
  return kernels;
}

}  // namespace malv
