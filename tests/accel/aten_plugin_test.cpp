// The PyTorch executor plugin, loaded on first use: a host built with
// libtorch-dev loads it at the first intern() and runs operators through
// it; a missing plugin, or a build without it, answers kUnimplemented with
// the reason, every time, and nothing else breaks.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <vector>

#include "accel/aten_plugin_loader.h"

namespace malv::accel {
namespace {

TEST(AtenPlugin, LoadsOnFirstUseAndRunsAnOperatorOverTheCallersMemory) {
#ifndef MALV_TEST_HAS_ATEN_PLUGIN
  GTEST_SKIP() << "built without libtorch-dev: no plugin to load";
#endif
  std::unique_ptr<AtenOperators> ops = make_aten_operators();
  auto relu = ops->intern("aten::relu");
  ASSERT_TRUE(relu.ok()) << relu.error().to_string();
  std::vector<float> in{-1.5f, 2.0f, -0.0f, 3.25f}, out(4, 9.0f);
  auto view = [](std::uint64_t buffer) {
    return wire::AtenValue::tensor(wire::AtenTensorArg{
        .buffer = buffer, .offset = 0, .dtype = 6, .sizes = {4}, .strides = {1}});
  };
  const ResolveBuffer resolve = [&](std::uint64_t handle) -> Result<BufferMemory> {
    std::vector<float>& v = handle == 1 ? in : out;
    return BufferMemory{reinterpret_cast<std::byte*>(v.data()), v.size() * sizeof(float)};
  };
  auto task = ops->prepare_task(*relu, std::vector<wire::AtenValue>{view(1), view(2)}, resolve);
  ASSERT_TRUE(task.ok()) << task.error().to_string();
  EXPECT_EQ(out[0], 9.0f);  // nothing ran at prepare
  ASSERT_EQ((*task)->run(), ErrorCode::kOk) << (*task)->error_text();
  EXPECT_EQ(out, (std::vector<float>{0.0f, 2.0f, 0.0f, 3.25f}));
  EXPECT_EQ((*task)->name(), "aten::relu");
}

TEST(AtenPlugin, AMissingPluginIsRefusedWithTheReasonEveryTime) {
  ::setenv("MALV_ATEN_PLUGIN", "/nonexistent/libmalv_aten.so", 1);
  std::unique_ptr<AtenOperators> ops = make_aten_operators();
  for (int i = 0; i < 2; ++i) {
    auto id = ops->intern("aten::relu");
    ASSERT_FALSE(id.ok());
    EXPECT_EQ(id.error().code(), ErrorCode::kUnimplemented);
#ifdef MALV_TEST_HAS_ATEN_PLUGIN
    EXPECT_NE(id.error().message().find("/nonexistent/libmalv_aten.so"), std::string::npos)
        << id.error().message();
#endif
  }
  EXPECT_EQ(ops->prepare_task(1, {}, {}).error().code(), ErrorCode::kNotFound);
  ::unsetenv("MALV_ATEN_PLUGIN");
}

}  // namespace
}  // namespace malv::accel
