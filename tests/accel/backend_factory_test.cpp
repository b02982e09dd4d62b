// make_backend(): the backend for a name, and the "auto" rule. On a host
// without a CUDA device (CI, this machine) "auto" is the CPU and "cuda" is
// a clear error; with one, "auto" is CUDA.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "accel/backend.h"
#include "accel/cuda/cuda_plugin.h"

namespace malv::accel {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const BackendOptions kSmall{.memory_bytes = 64 << 20, .workers = 1};

TEST(BackendFactory, CpuIsAlwaysThere) {
  auto backend = make_backend("cpu", kSmall);
  ASSERT_TRUE(backend.ok()) << backend.error().to_string();
  EXPECT_EQ((*backend)->info().backend, "cpu");
  EXPECT_EQ((*backend)->info().total_memory, kSmall.memory_bytes);
}

TEST(BackendFactory, UnknownNameIsInvalidArgumentListingTheChoices) {
  auto backend = make_backend("tpu", kSmall);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(backend.error().message(), HasSubstr("cpu, cuda, auto"));
}

TEST(BackendFactory, AutoPicksCudaWithADeviceAndCpuWithout) {
  const bool have_cuda = make_cuda_backend({.memory_bytes = kSmall.memory_bytes}).ok();
  auto backend = make_backend("auto", kSmall);
  ASSERT_TRUE(backend.ok()) << backend.error().to_string();
  EXPECT_EQ((*backend)->info().backend, have_cuda ? "cuda" : "cpu");
}

TEST(BackendFactory, CudaWithoutADeviceFailsWithAClearError) {
  auto backend = make_backend("cuda", kSmall);
  if (backend.ok()) GTEST_SKIP() << "a CUDA device is present: " << (*backend)->info().name;
  const Error& error = backend.error();
  EXPECT_THAT(error.to_string(), HasSubstr("backend cuda"));
  if (!cuda_backend_built()) {
    EXPECT_EQ(error.code(), ErrorCode::kUnimplemented);
    EXPECT_THAT(error.message(), HasSubstr("not built"));
    return;
  }
  EXPECT_EQ(error.code(), ErrorCode::kUnavailable);
  EXPECT_THAT(error.message(), StartsWith("no CUDA device: "));
}

TEST(BackendFactory, CudaBaselineWithoutADeviceFailsTheSameWay) {
  if (make_cuda_backend({.memory_bytes = kSmall.memory_bytes}).ok()) {
    GTEST_SKIP() << "a CUDA device is present";
  }
  auto baseline = run_cuda_baseline({});
  ASSERT_FALSE(baseline.ok());
  EXPECT_TRUE(baseline.error().code() == ErrorCode::kUnavailable ||
              baseline.error().code() == ErrorCode::kUnimplemented)
      << baseline.error().to_string();
}

}  // namespace
}  // namespace malv::accel
