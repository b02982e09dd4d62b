#include "accel/kernel_registry.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "accel/kernel_ids.h"

namespace malv::accel {
namespace {

const std::vector<std::string_view> kExpectedNames = {
    "nop",      "gemm",      "add",           "scale",        "axpy",
    "bias_add", "relu",      "relu_backward", "softmax_xent", "softmax_xent_backward",
    "sum_rows", "adam_step", "sgd_step",      "fill",         "argmax_rows"};

bool is_dim(std::string_view name) {
  return name == "m" || name == "n" || name == "k" || name == "rows" || name == "cols";
}

// Arguments that satisfy every rule: dims of 4, flags 0, step 1, betas 0.9,
// aligned buffers with far more room than needed.
std::vector<KernelArgValue> valid_args(const KernelDef& kernel) {
  std::vector<KernelArgValue> args;
  for (std::size_t i = 0; i < kernel.params.size(); ++i) {
    KernelArgValue arg;
    arg.kind = kernel.params[i];
    std::string_view name = kernel.param_names[i];
    switch (arg.kind) {
      case ArgKind::kBuffer:
        arg.ptr = DevicePtr{4096 * (i + 1)};
        arg.extent = 1 << 20;
        break;
      case ArgKind::kI64: arg.i64 = is_dim(name) ? 4 : (name == "step" ? 1 : 0); break;
      case ArgKind::kF32: arg.f32 = (name == "beta1" || name == "beta2") ? 0.9f : 0.5f; break;
    }
    args.push_back(arg);
  }
  return args;
}

std::size_t param_index(const KernelDef& kernel, std::string_view name) {
  for (std::size_t i = 0; i < kernel.param_names.size(); ++i) {
    if (kernel.param_names[i] == name) return i;
  }
  ADD_FAILURE() << kernel.name << " has no parameter " << name;
  return 0;
}

ErrorCode code_of(const Status& status) {
  return status.ok() ? ErrorCode::kOk : status.error().code();
}

TEST(KernelRegistry, ListsEveryBuiltinKernelInIdOrder) {
  auto kernels = all_kernels();
  ASSERT_EQ(kernels.size(), kExpectedNames.size());
  ASSERT_EQ(kernels.size(), kBuiltinKernelCount);
  for (std::size_t i = 0; i < kernels.size(); ++i) {
    EXPECT_EQ(kernels[i].name, kExpectedNames[i]);
    EXPECT_EQ(kernels[i].id.value(), i + 1);
    EXPECT_EQ(kernels[i].params.size(), kernels[i].param_names.size());
    EXPECT_LE(kernels[i].params.size(), kMaxKernelArgs);
  }
}

TEST(KernelRegistry, FindsEveryKernelByNameAndById) {
  for (const KernelDef& kernel : all_kernels()) {
    EXPECT_EQ(find_kernel(kernel.name), &kernel);
    EXPECT_EQ(find_kernel(kernel.id), &kernel);
  }
}

TEST(KernelRegistry, UnknownNamesAndIdsAreNotFound) {
  EXPECT_EQ(find_kernel("conv2d"), nullptr);
  EXPECT_EQ(find_kernel(""), nullptr);
  EXPECT_EQ(find_kernel(KernelId{0}), nullptr);
  EXPECT_EQ(find_kernel(KernelId{static_cast<std::uint32_t>(kExpectedNames.size() + 1)}), nullptr);
}

TEST(KernelRegistry, BuiltinKernelConstantsMatchRegistryIds) {
  EXPECT_EQ(find_kernel(kernel_id(BuiltinKernel::kNop))->name, "nop");
  EXPECT_EQ(find_kernel(kernel_id(BuiltinKernel::kGemm))->name, "gemm");
  EXPECT_EQ(find_kernel(kernel_id(BuiltinKernel::kSoftmaxXent))->name, "softmax_xent");
  EXPECT_EQ(find_kernel(kernel_id(BuiltinKernel::kAdamStep))->name, "adam_step");
  EXPECT_EQ(find_kernel(kernel_id(BuiltinKernel::kArgmaxRows))->name, "argmax_rows");
}

TEST(KernelRegistry, GemmSignatureIsBuffersThenIntsThenFloats) {
  const KernelDef* gemm = find_kernel("gemm");
  ASSERT_NE(gemm, nullptr);
  std::vector<ArgKind> expected = {
      ArgKind::kBuffer, ArgKind::kBuffer, ArgKind::kBuffer, ArgKind::kI64, ArgKind::kI64,
      ArgKind::kI64,    ArgKind::kI64,    ArgKind::kI64,    ArgKind::kF32, ArgKind::kF32};
  EXPECT_EQ(std::vector<ArgKind>(gemm->params.begin(), gemm->params.end()), expected);
}

TEST(ValidateLaunch, AcceptsWellFormedArgumentsForEveryKernel) {
  for (const KernelDef& kernel : all_kernels()) {
    auto args = valid_args(kernel);
    Status status = validate_launch(kernel, args);
    EXPECT_TRUE(status.ok()) << kernel.name << ": " << status.error().to_string();
  }
}

TEST(ValidateLaunch, RejectsWrongArgumentCountWithInvalidArgument) {
  for (const KernelDef& kernel : all_kernels()) {
    auto args = valid_args(kernel);
    args.push_back(KernelArgValue{});
    Status too_many = validate_launch(kernel, args);
    ASSERT_FALSE(too_many.ok()) << kernel.name;
    EXPECT_EQ(too_many.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(too_many.error().message().find(kernel.name), std::string::npos);
    if (args.size() >= 2) {
      args.resize(args.size() - 2);
      EXPECT_EQ(code_of(validate_launch(kernel, args)), ErrorCode::kInvalidArgument) << kernel.name;
    }
  }
}

TEST(ValidateLaunch, RejectsWrongKindNamingKernelAndParameter) {
  const KernelDef& relu = *find_kernel("relu");
  auto args = valid_args(relu);
  args[2].kind = ArgKind::kBuffer;
  Status status = validate_launch(relu, args);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.error().message(), "kernel 'relu' parameter 2 ('n') expects i64, got buffer");
}

TEST(ValidateLaunch, RejectsEveryMismatchedKindOfEveryKernel) {
  for (const KernelDef& kernel : all_kernels()) {
    for (std::size_t i = 0; i < kernel.params.size(); ++i) {
      for (ArgKind other : {ArgKind::kBuffer, ArgKind::kI64, ArgKind::kF32}) {
        if (other == kernel.params[i]) continue;
        auto args = valid_args(kernel);
        args[i].kind = other;
        EXPECT_EQ(code_of(validate_launch(kernel, args)), ErrorCode::kInvalidArgument)
            << kernel.name << " parameter " << i;
      }
    }
  }
}

TEST(ValidateLaunch, GemmBufferOneFloatShortIsOutOfRangeWithPreciseMessage) {
  const KernelDef& gemm = *find_kernel("gemm");
  auto args = valid_args(gemm);
  args[3].i64 = 16;  // m
  args[4].i64 = 64;  // n
  args[5].i64 = 32;  // k
  args[0].extent = 16 * 32 * 4;
  args[1].extent = 32 * 64 * 4;
  args[2].extent = 16 * 64 * 4;
  EXPECT_TRUE(validate_launch(gemm, args).ok());
  args[1].extent -= 4;
  Status status = validate_launch(gemm, args);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(status.error().message(),
            "gemm: buffer 'b' needs 8192 bytes from its offset, has 8188");
}

TEST(ValidateLaunch, EveryBufferOneFloatShortOfEveryKernelIsOutOfRange) {
  for (const KernelDef& kernel : all_kernels()) {
    for (std::size_t i = 0; i < kernel.params.size(); ++i) {
      if (kernel.params[i] != ArgKind::kBuffer) continue;
      auto args = valid_args(kernel);
      // Find the exact extent this buffer needs: the smallest one accepted.
      std::uint64_t low = 0;
      std::uint64_t high = args[i].extent;
      while (low < high) {
        std::uint64_t mid = (low + high) / 2;
        args[i].extent = mid;
        if (validate_launch(kernel, args).ok()) {
          high = mid;
        } else {
          low = mid + 1;
        }
      }
      ASSERT_GE(low, 4u) << kernel.name << " buffer " << kernel.param_names[i];
      args[i].extent = low;
      EXPECT_TRUE(validate_launch(kernel, args).ok());
      args[i].extent = low - 4;
      Status status = validate_launch(kernel, args);
      ASSERT_FALSE(status.ok());
      EXPECT_EQ(status.error().code(), ErrorCode::kOutOfRange);
      EXPECT_NE(status.error().message().find(std::string(kernel.param_names[i])),
                std::string::npos);
    }
  }
}

TEST(ValidateLaunch, ZeroAndNegativeDimsAreInvalidArgument) {
  for (const KernelDef& kernel : all_kernels()) {
    for (std::size_t i = 0; i < kernel.params.size(); ++i) {
      if (kernel.params[i] != ArgKind::kI64 || !is_dim(kernel.param_names[i])) continue;
      for (std::int64_t bad : {std::int64_t{0}, std::int64_t{-1}, INT64_MIN}) {
        auto args = valid_args(kernel);
        args[i].i64 = bad;
        Status status = validate_launch(kernel, args);
        ASSERT_FALSE(status.ok()) << kernel.name << " " << kernel.param_names[i] << "=" << bad;
        EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(status.error().message().find(kernel.name), std::string::npos);
      }
    }
  }
}

TEST(ValidateLaunch, OverflowingDimsAreInvalidArgumentNotWrappedSizes) {
  const std::int64_t huge = std::int64_t{1} << 40;
  auto gemm_args = valid_args(*find_kernel("gemm"));
  gemm_args[3].i64 = gemm_args[4].i64 = gemm_args[5].i64 = huge;
  EXPECT_EQ(code_of(validate_launch(*find_kernel("gemm"), gemm_args)), ErrorCode::kInvalidArgument);

  // rows * cols * 4 wraps to 0 in 64 bits: it must not pass as "needs 0 bytes".
  auto bias_args = valid_args(*find_kernel("bias_add"));
  bias_args[2].i64 = std::int64_t{1} << 31;
  bias_args[3].i64 = std::int64_t{1} << 31;
  EXPECT_EQ(code_of(validate_launch(*find_kernel("bias_add"), bias_args)),
            ErrorCode::kInvalidArgument);

  auto add_args = valid_args(*find_kernel("add"));
  add_args[3].i64 = std::int64_t{1} << 62;
  EXPECT_EQ(code_of(validate_launch(*find_kernel("add"), add_args)), ErrorCode::kInvalidArgument);

  auto softmax_args = valid_args(*find_kernel("softmax_xent"));
  softmax_args[4].i64 = INT64_MAX;
  softmax_args[5].i64 = INT64_MAX;
  EXPECT_EQ(code_of(validate_launch(*find_kernel("softmax_xent"), softmax_args)),
            ErrorCode::kInvalidArgument);
}

TEST(ValidateLaunch, GemmTransposeFlagsOtherThanZeroOrOneAreInvalidArgument) {
  const KernelDef& gemm = *find_kernel("gemm");
  for (std::size_t flag : {6u, 7u}) {
    for (std::int64_t bad : {2, -1, 256}) {
      auto args = valid_args(gemm);
      args[flag].i64 = bad;
      EXPECT_EQ(code_of(validate_launch(gemm, args)), ErrorCode::kInvalidArgument)
          << gemm.param_names[flag] << "=" << bad;
    }
    auto args = valid_args(gemm);
    args[flag].i64 = 1;
    EXPECT_TRUE(validate_launch(gemm, args).ok());
  }
}

TEST(ValidateLaunch, GemmTransposedShapesNeedTheSameBytes) {
  const KernelDef& gemm = *find_kernel("gemm");
  auto args = valid_args(gemm);
  args[3].i64 = 3;
  args[4].i64 = 5;
  args[5].i64 = 7;
  args[0].extent = 3 * 7 * 4;
  args[1].extent = 7 * 5 * 4;
  args[2].extent = 3 * 5 * 4;
  for (std::int64_t ta : {0, 1}) {
    for (std::int64_t tb : {0, 1}) {
      args[6].i64 = ta;
      args[7].i64 = tb;
      EXPECT_TRUE(validate_launch(gemm, args).ok());
    }
  }
}

TEST(ValidateLaunch, AdamStepBelowOneAndBetaOfOneAreInvalidArgument) {
  const KernelDef& adam = *find_kernel("adam_step");
  auto args = valid_args(adam);
  args[param_index(adam, "step")].i64 = 0;
  EXPECT_EQ(code_of(validate_launch(adam, args)), ErrorCode::kInvalidArgument);
  args = valid_args(adam);
  args[param_index(adam, "beta1")].f32 = 1.0f;
  EXPECT_EQ(code_of(validate_launch(adam, args)), ErrorCode::kInvalidArgument);
  args = valid_args(adam);
  args[param_index(adam, "beta2")].f32 = -0.1f;
  EXPECT_EQ(code_of(validate_launch(adam, args)), ErrorCode::kInvalidArgument);
}

TEST(ValidateLaunch, MisalignedBufferIsInvalidArgument) {
  const KernelDef& relu = *find_kernel("relu");
  auto args = valid_args(relu);
  args[0].ptr = args[0].ptr + 2;
  EXPECT_EQ(code_of(validate_launch(relu, args)), ErrorCode::kInvalidArgument);
}

TEST(ValidateLaunch, NopTakesNoArguments) {
  const KernelDef& nop = *find_kernel("nop");
  EXPECT_TRUE(validate_launch(nop, {}).ok());
  KernelArgValue one{};
  EXPECT_EQ(code_of(validate_launch(nop, std::span(&one, 1))), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace malv::accel
