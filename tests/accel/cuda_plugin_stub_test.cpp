// The CUDA backend plugin against the toolkit's stub driver: what CI can
// check of the plugin without a GPU. The stub (SONAME libcuda.so.1) is
// loaded first, so the plugin finds a "driver", loads with every driver
// and cuBLAS symbol resolved, speaks our ABI, and reports that the stub is
// no device as a clear kUnavailable error; "auto" then takes the CPU.
// Built only where the toolkit was found; its own process, since the stub
// stays loaded.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "accel/backend.h"
#include "accel/cuda/cuda_plugin.h"

namespace malv::accel {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class CudaPluginWithStubDriver : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::dlopen(MALV_CUDA_STUB, RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      FAIL() << "cannot load the stub driver " << MALV_CUDA_STUB << ": " << ::dlerror();
    }
  }
};

TEST_F(CudaPluginWithStubDriver, PluginLoadsAndSaysTheStubIsNoDevice) {
  ASSERT_TRUE(cuda_backend_built());
  auto backend = make_cuda_backend({});
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.error().code(), ErrorCode::kUnavailable) << backend.error().to_string();
  EXPECT_THAT(backend.error().message(), StartsWith("no CUDA device: cuInit: "));
  EXPECT_THAT(backend.error().message(), HasSubstr("CUDA_ERROR_STUB_LIBRARY"));
}

TEST_F(CudaPluginWithStubDriver, AutoTakesTheCpu) {
  auto backend = make_backend("auto", {.memory_bytes = 16 << 20, .workers = 1});
  ASSERT_TRUE(backend.ok()) << backend.error().to_string();
  EXPECT_EQ((*backend)->info().backend, "cpu");
}

TEST_F(CudaPluginWithStubDriver, BaselineSaysTheStubIsNoDevice) {
  auto baseline = run_cuda_baseline({});
  ASSERT_FALSE(baseline.ok());
  EXPECT_EQ(baseline.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(baseline.error().message(), HasSubstr("CUDA_ERROR_STUB_LIBRARY"));
}

}  // namespace
}  // namespace malv::accel
