// The CUDA backend: the conformance suite, plus what only a GPU backend
// promises (page-locked registration of a shared arena, recovery from a
// device fault). Labelled `gpu`: every test skips, saying why, on a host
// without a CUDA device (or without the CUDA backend built).
#include <sys/mman.h>

#include <cstring>

#include "backend_conformance.h"

namespace malv::accel::testing {
namespace {

constexpr std::uint64_t kTestMemory = 256ull << 20;

std::unique_ptr<Backend> make_cuda() {
  auto backend = make_cuda_backend({.memory_bytes = kTestMemory});
  if (!backend.ok()) {
    ADD_FAILURE() << backend.error().to_string();
    return nullptr;
  }
  return std::move(backend).value();
}

// Empty when a CUDA backend can be made here; asked once per process.
std::string cuda_unavailable() {
  static const std::string why = [] {
    auto backend = make_cuda_backend({.memory_bytes = kTestMemory});
    return backend.ok() ? std::string() : backend.error().message();
  }();
  return why;
}

const BackendFactory kCuda{"cuda", &make_cuda, &cuda_unavailable};

INSTANTIATE_TEST_SUITE_P(Cuda, BackendConformance, ::testing::Values(kCuda), backend_factory_name);
INSTANTIATE_TEST_SUITE_P(Cuda, KernelConformance, ::testing::Values(kCuda), backend_factory_name);

// What only the CUDA backend promises, on the conformance fixture (a fresh
// backend and a queue per test, skipping without a device).
class CudaOnly : public BackendConformance {};
INSTANTIATE_TEST_SUITE_P(Cuda, CudaOnly, ::testing::Values(kCuda), backend_factory_name);

TEST_P(CudaOnly, InfoNamesTheDevice) {
  DeviceInfo info = backend_->info();
  EXPECT_EQ(info.backend, "cuda");
  EXPECT_EQ(info.total_memory, kTestMemory);
  EXPECT_GT(info.compute_units, 0u);
}

TEST_P(CudaOnly, SharedArenaRegisteredForDmaCopiesBothWays) {
  // A session's arena is a shared mapping of a memfd; this is one like it.
  const std::size_t bytes = 8 << 20;
  void* arena = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(arena, MAP_FAILED);
  auto* bytes_of = static_cast<std::uint8_t*>(arena);
  for (std::size_t i = 0; i < bytes / 2; ++i) bytes_of[i] = static_cast<std::uint8_t>(i * 13);
  ASSERT_TRUE(backend_->register_host_memory(arena, bytes).ok());
  DeviceBuffer device = allocate(bytes / 2);
  EXPECT_EQ(run(CopyH2D{arena, device.ptr, bytes / 2}), ErrorCode::kOk);
  EXPECT_EQ(run(CopyD2H{device.ptr, bytes_of + bytes / 2, bytes / 2}), ErrorCode::kOk);
  EXPECT_EQ(std::memcmp(bytes_of, bytes_of + bytes / 2, bytes / 2), 0);
  backend_->unregister_host_memory(arena);
  ::munmap(arena, bytes);
}

TEST_P(CudaOnly, HighPriorityQueueRunsWorkLikeAnyOther) {
  // The MLaaS inference service's internal queue is one of these.
  QueueId high = *backend_->create_queue(QueuePriority::kHigh);
  DeviceBuffer x = allocate(4 * 1024);
  CompletionLog log;
  backend_->enqueue(high, make_launch("fill", {buf(x), i64(1024), f32(2.5f)}), log.completion(1));
  std::vector<float> out(1024);
  backend_->enqueue(high, CopyD2H{x.ptr, out.data(), x.bytes}, log.completion(2));
  backend_->synchronize_all();
  EXPECT_EQ(log.entries().size(), 2u);
  EXPECT_EQ(out, std::vector<float>(1024, 2.5f));
  backend_->destroy_queue(high);
}

TEST_P(CudaOnly, DeviceFaultIsReportedThenTheDeviceIsRebuilt) {
  // Arguments are the caller's to validate; a launch that names memory
  // nobody allocated makes the device fault with an illegal address, which
  // poisons the context. That launch fails with device_reset, and so does
  // every later op on memory from before the reset; new memory works.
  DeviceBuffer before = allocate(4096);
  ASSERT_EQ(launch("fill", {buf(before), i64(1024), f32(1.0f)}), ErrorCode::kOk);
  const DeviceBuffer nowhere{DevicePtr{0x1000}, std::size_t{1} << 30};
  EXPECT_EQ(launch("fill", {buf(nowhere), i64(1 << 28), f32(1.0f)}), ErrorCode::kDeviceReset);

  EXPECT_EQ(launch("fill", {buf(before), i64(1024), f32(2.0f)}), ErrorCode::kDeviceReset);
  std::vector<float> host(1024);
  EXPECT_EQ(run(CopyD2H{before.ptr, host.data(), before.bytes}), ErrorCode::kDeviceReset);
  EXPECT_EQ(backend_->memory_in_use(), 0u);  // everything went with the old context

  DeviceBuffer after = allocate(4096);  // the fixture frees both; `before` is ignored
  EXPECT_EQ(launch("fill", {buf(after), i64(1024), f32(3.0f)}), ErrorCode::kOk);
  EXPECT_EQ(download<float>(after), std::vector<float>(1024, 3.0f));
}

}  // namespace
}  // namespace malv::accel::testing
