// blas_kernels(): OpenBLAS runs the kernels the CPU's features allow, not
// the generic ones it falls back to for a CPU model it does not know, and
// child processes inherit the choice.
#include "accel/cpu/blas_kernels.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

extern "C" char* openblas_get_corename(void);

namespace malv::accel::cpu {
namespace {

TEST(BlasKernels, WhatIsInUseIsWhatOpenBlasRuns) {
  const BlasKernels& k = blas_kernels();
  EXPECT_EQ(k.in_use, openblas_get_corename());
  EXPECT_FALSE(k.reason.empty());
  EXPECT_NE(k.describe().find(k.in_use), std::string::npos);
}

TEST(BlasKernels, ACpuWithAvx512RunsAvx512KernelsUnlessTheUserChoseOthers) {
  const BlasKernels& k = blas_kernels();
  if (k.reason.starts_with("OPENBLAS_CORETYPE=")) GTEST_SKIP() << k.reason;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  if (!avx512) GTEST_SKIP() << "no AVX-512 here; OpenBLAS runs " << k.describe();
  EXPECT_NE(k.in_use, "Prescott") << k.describe();
  EXPECT_NE(k.in_use, "Haswell") << k.describe();
  if (k.chosen_by_library == "Prescott") {
    EXPECT_EQ(k.in_use, "SkylakeX") << k.describe();
  }
}

TEST(BlasKernels, AChildProcessRunsTheSameKernels) {
  const BlasKernels& k = blas_kernels();
  if (k.in_use == k.chosen_by_library) GTEST_SKIP() << "nothing was switched: " << k.describe();
  FILE* child = ::popen("printf %s \"$OPENBLAS_CORETYPE\"", "r");
  ASSERT_NE(child, nullptr);
  std::array<char, 64> buf{};
  const std::size_t n = std::fread(buf.data(), 1, buf.size() - 1, child);
  ::pclose(child);
  EXPECT_EQ(std::string(buf.data(), n), k.in_use);
}

}  // namespace
}  // namespace malv::accel::cpu
