// The backend conformance suite: one set of tests, written against the
// Backend interface only, that every backend must pass. A backend joins by
// instantiating it with a factory (see cpu_backend_test.cpp):
//
//   INSTANTIATE_TEST_SUITE_P(Cpu, BackendConformance,
//                            ::testing::Values(BackendFactory{"cpu", &make_cpu}),
//                            backend_factory_name);
//
// A backend that needs a device (cuda_backend_test.cpp) also gives an
// `unavailable` function, and its tests skip where there is none.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "accel/backend.h"

namespace malv::accel::testing {

struct BackendFactory {
  std::string name;
  // A fresh backend. Its capacity should be small enough that allocating
  // all of it in a test is cheap (info().total_memory is what tests use).
  std::unique_ptr<Backend> (*make)();
  // Why this backend cannot run here (empty: it can), for backends that
  // need hardware; every test of the instance then skips with that reason.
  std::string (*unavailable)() = nullptr;
};

std::string backend_factory_name(const ::testing::TestParamInfo<BackendFactory>& info);
// How gtest prints the parameter (in test lists and ctest names): its name.
inline void PrintTo(const BackendFactory& factory, std::ostream* out) { *out << factory.name; }

// Records every completion (cookie, status) in the order they ran.
class CompletionLog {
 public:
  Completion completion(std::uint64_t cookie) { return Completion{&record, this, cookie}; }
  std::vector<std::pair<std::uint64_t, ErrorCode>> entries() const {
    std::lock_guard lock(mu_);
    return entries_;
  }

 private:
  static void record(void* context, std::uint64_t cookie, ErrorCode status) {
    auto* log = static_cast<CompletionLog*>(context);
    std::lock_guard lock(log->mu_);
    log->entries_.emplace_back(cookie, status);
  }
  mutable std::mutex mu_;
  std::vector<std::pair<std::uint64_t, ErrorCode>> entries_;
};

struct DeviceBuffer {
  DevicePtr ptr;
  std::size_t bytes = 0;
};

class BackendConformance : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  DeviceBuffer allocate(std::size_t bytes);
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& values) {
    DeviceBuffer buffer = allocate(values.size() * sizeof(T));
    EXPECT_EQ(run(CopyH2D{values.data(), buffer.ptr, buffer.bytes}), ErrorCode::kOk);
    return buffer;
  }
  template <typename T>
  std::vector<T> download(const DeviceBuffer& buffer) {
    std::vector<T> values(buffer.bytes / sizeof(T));
    EXPECT_EQ(run(CopyD2H{buffer.ptr, values.data(), values.size() * sizeof(T)}), ErrorCode::kOk);
    return values;
  }

  // Enqueues one op on the test queue, waits for it, returns its status.
  ErrorCode run(Op op);
  // Validates against the registry (must pass), then runs the kernel.
  ErrorCode launch(std::string_view kernel, std::vector<KernelArgValue> args);
  static Launch make_launch(std::string_view kernel, const std::vector<KernelArgValue>& args);

  static KernelArgValue buf(const DeviceBuffer& buffer);
  static KernelArgValue i64(std::int64_t value);
  static KernelArgValue f32(float value);

  std::unique_ptr<Backend> backend_;
  QueueId queue_;

 private:
  std::vector<DeviceBuffer> buffers_;
};

// The kernels' half of the suite (backend_kernels_test.cpp); same fixture.
class KernelConformance : public BackendConformance {};

}  // namespace malv::accel::testing
