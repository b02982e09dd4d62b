// The CUDA backend: the conformance suite, plus what only a GPU backend
// promises (page-locked registration of a shared arena, recovery from a
// device fault). Labelled `gpu`: every test skips, saying why, on a host
// without a CUDA device (or without the CUDA backend built).
#include <gmock/gmock.h>
#include <sys/mman.h>
#include <unistd.h>

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

INSTANTIATE_TEST_SUITE_P(Cuda, BackendConformance,
                         ::testing::Values(BackendFactory{"cuda", &make_cuda, &cuda_unavailable}),
                         backend_factory_name);
INSTANTIATE_TEST_SUITE_P(Cuda, KernelConformance,
                         ::testing::Values(BackendFactory{"cuda", &make_cuda, &cuda_unavailable}),
                         backend_factory_name);

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = cuda_unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
    backend_ = make_cuda();
    ASSERT_NE(backend_, nullptr);
    queue_ = *backend_->create_queue(QueuePriority::kNormal);
  }
  void TearDown() override {
    if (!backend_) return;
    backend_->synchronize_all();
    backend_->destroy_queue(queue_);
    backend_.reset();
  }

  ErrorCode run(Op op) {
    CompletionLog log;
    backend_->enqueue(queue_, std::move(op), log.completion(1));
    backend_->synchronize_all();
    auto entries = log.entries();
    EXPECT_EQ(entries.size(), 1u);
    return entries.empty() ? ErrorCode::kInternal : entries[0].second;
  }

  static Launch fill(DevicePtr ptr, std::uint64_t extent, std::int64_t n, float value) {
    Launch launch{};
    launch.kernel = find_kernel("fill")->id;
    launch.argc = 3;
    launch.args[0].kind = ArgKind::kBuffer;
    launch.args[0].ptr = ptr;
    launch.args[0].extent = extent;
    launch.args[1].kind = ArgKind::kI64;
    launch.args[1].i64 = n;
    launch.args[2].kind = ArgKind::kF32;
    launch.args[2].f32 = value;
    return launch;
  }

  std::unique_ptr<Backend> backend_;
  QueueId queue_;
};

TEST_F(CudaBackendTest, InfoNamesTheDevice) {
  DeviceInfo info = backend_->info();
  EXPECT_EQ(info.backend, "cuda");
  EXPECT_EQ(info.total_memory, kTestMemory);
  EXPECT_GT(info.compute_units, 0u);
}

TEST_F(CudaBackendTest, SharedArenaRegisteredForDmaCopiesBothWays) {
  // A session's arena is a shared mapping of a memfd; this is one like it.
  const std::size_t bytes = 8 << 20;
  void* arena = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(arena, MAP_FAILED);
  auto* bytes_of = static_cast<std::uint8_t*>(arena);
  for (std::size_t i = 0; i < bytes / 2; ++i) bytes_of[i] = static_cast<std::uint8_t>(i * 13);
  ASSERT_TRUE(backend_->register_host_memory(arena, bytes).ok());
  DevicePtr device = *backend_->allocate(bytes / 2);
  EXPECT_EQ(run(CopyH2D{arena, device, bytes / 2}), ErrorCode::kOk);
  EXPECT_EQ(run(CopyD2H{device, bytes_of + bytes / 2, bytes / 2}), ErrorCode::kOk);
  EXPECT_EQ(std::memcmp(bytes_of, bytes_of + bytes / 2, bytes / 2), 0);
  backend_->free(device);
  backend_->unregister_host_memory(arena);
  ::munmap(arena, bytes);
}

TEST_F(CudaBackendTest, HighPriorityQueueRunsWorkLikeAnyOther) {
  QueueId high = *backend_->create_queue(QueuePriority::kHigh);
  DevicePtr x = *backend_->allocate(4 * 1024);
  CompletionLog log;
  backend_->enqueue(high, fill(x, 4 * 1024, 1024, 2.5f), log.completion(1));
  std::vector<float> out(1024);
  backend_->enqueue(high, CopyD2H{x, out.data(), 4 * 1024}, log.completion(2));
  backend_->synchronize_all();
  EXPECT_EQ(log.entries().size(), 2u);
  EXPECT_EQ(out, std::vector<float>(1024, 2.5f));
  backend_->destroy_queue(high);
  backend_->free(x);
}

TEST_F(CudaBackendTest, DeviceFaultIsReportedThenTheDeviceIsRebuilt) {
  // Arguments are the caller's to validate; a launch that names memory
  // nobody allocated makes the device fault with an illegal address, which
  // poisons the context. That launch fails with device_reset, and so does
  // every later op on memory from before the reset; new memory works.
  DevicePtr before = *backend_->allocate(4096);
  ASSERT_EQ(run(fill(before, 4096, 1024, 1.0f)), ErrorCode::kOk);
  const DevicePtr nowhere{0x1000};
  EXPECT_EQ(run(fill(nowhere, 1u << 30, 1 << 28, 1.0f)), ErrorCode::kDeviceReset);

  EXPECT_EQ(run(fill(before, 4096, 1024, 2.0f)), ErrorCode::kDeviceReset);
  std::vector<float> host(1024);
  EXPECT_EQ(run(CopyD2H{before, host.data(), 4096}), ErrorCode::kDeviceReset);
  backend_->free(before);  // from before the reset: ignored, not someone else's memory
  EXPECT_EQ(backend_->memory_in_use(), 0u);

  auto after = backend_->allocate(4096);
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(run(fill(*after, 4096, 1024, 3.0f)), ErrorCode::kOk);
  EXPECT_EQ(run(CopyD2H{*after, host.data(), 4096}), ErrorCode::kOk);
  EXPECT_EQ(host, std::vector<float>(1024, 3.0f));
  backend_->free(*after);
}

}  // namespace
}  // namespace malv::accel::testing
