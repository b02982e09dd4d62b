#include "backend_conformance.h"

namespace malv::accel::testing {

std::string backend_factory_name(const ::testing::TestParamInfo<BackendFactory>& info) {
  return info.param.name;
}

void BackendConformance::SetUp() {
  if (GetParam().unavailable != nullptr) {
    const std::string why = GetParam().unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
  }
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr);
  auto queue = backend_->create_queue(QueuePriority::kNormal);
  ASSERT_TRUE(queue.ok());
  queue_ = *queue;
}

void BackendConformance::TearDown() {
  if (!backend_) return;
  backend_->synchronize_all();
  for (const DeviceBuffer& buffer : buffers_) backend_->free(buffer.ptr);
  backend_->destroy_queue(queue_);
  EXPECT_EQ(backend_->memory_in_use(), 0u);
  backend_.reset();
}

DeviceBuffer BackendConformance::allocate(std::size_t bytes) {
  auto ptr = backend_->allocate(bytes);
  EXPECT_TRUE(ptr.ok()) << ptr.error().to_string();
  DeviceBuffer buffer{ptr.ok() ? *ptr : DevicePtr{}, bytes};
  if (ptr.ok()) buffers_.push_back(buffer);
  return buffer;
}

ErrorCode BackendConformance::run(Op op) {
  CompletionLog log;
  backend_->enqueue(queue_, std::move(op), log.completion(1));
  backend_->synchronize_all();
  auto entries = log.entries();
  EXPECT_EQ(entries.size(), 1u);
  return entries.empty() ? ErrorCode::kInternal : entries[0].second;
}

Launch BackendConformance::make_launch(std::string_view kernel,
                                       const std::vector<KernelArgValue>& args) {
  const KernelDef* def = find_kernel(kernel);
  EXPECT_NE(def, nullptr) << kernel;
  Launch launch{};
  launch.kernel = def != nullptr ? def->id : KernelId{};
  launch.argc = static_cast<std::uint32_t>(args.size());
  for (std::size_t i = 0; i < args.size() && i < kMaxKernelArgs; ++i) launch.args[i] = args[i];
  if (def != nullptr) {
    Status status = validate_launch(*def, args);
    EXPECT_TRUE(status.ok()) << status.error().to_string();
  }
  return launch;
}

ErrorCode BackendConformance::launch(std::string_view kernel, std::vector<KernelArgValue> args) {
  return run(make_launch(kernel, args));
}

KernelArgValue BackendConformance::buf(const DeviceBuffer& buffer) {
  KernelArgValue arg;
  arg.kind = ArgKind::kBuffer;
  arg.ptr = buffer.ptr;
  arg.extent = buffer.bytes;
  return arg;
}

KernelArgValue BackendConformance::i64(std::int64_t value) {
  KernelArgValue arg;
  arg.kind = ArgKind::kI64;
  arg.i64 = value;
  return arg;
}

KernelArgValue BackendConformance::f32(float value) {
  KernelArgValue arg;
  arg.kind = ArgKind::kF32;
  arg.f32 = value;
  return arg;
}

}  // namespace malv::accel::testing
