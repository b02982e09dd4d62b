// ModuleLoader and PolicyRegistry::load_module: what is loaded, what is
// refused, and that refusals name the file.
#include "mlaas/module_loader.h"

#include <gtest/gtest.h>

#include "test_modules.h"

namespace malv::mlaas::testing {
namespace {

void expect_refused(const std::string& kind, ErrorCode code, const std::string& needle) {
  auto module = ModuleLoader::open(test_module(kind));
  ASSERT_FALSE(module.ok()) << kind;
  EXPECT_EQ(module.error().code(), code) << module.error().to_string();
  EXPECT_NE(module.error().message().find(test_module(kind)), std::string::npos)
      << module.error().message();
  EXPECT_NE(module.error().message().find(needle), std::string::npos) << module.error().message();
}

TEST(ModuleLoader, LoadsAValidModuleWithItsNameVersionAndPolicies) {
  auto module = ModuleLoader::open(test_module("good"));
  ASSERT_TRUE(module.ok()) << module.error().to_string();
  EXPECT_EQ((*module)->name(), "test_policies");
  EXPECT_EQ((*module)->version(), "0.1.0");
  EXPECT_NE((*module)->find_policy("sleepy"), nullptr);
  EXPECT_EQ((*module)->find_policy("absent"), nullptr);
}

TEST(ModuleLoader, RefusesAModuleBuiltAgainstAnOlderAbiVersion) {
  expect_refused("old_abi", ErrorCode::kUnimplemented,
                 "ABI version " + std::to_string(MALV_MLAAS_ABI_VERSION - 1));
}

TEST(ModuleLoader, RefusesAModuleWithoutTheEntryPoint) {
  expect_refused("no_entry", ErrorCode::kNotFound, "malv_mlaas_module_get");
}

TEST(ModuleLoader, RefusesANullDescriptor) {
  expect_refused("null_descriptor", ErrorCode::kInvalidArgument, "NULL");
}

TEST(ModuleLoader, RefusesAPolicyOfAnUnknownClass) {
  expect_refused("bad_class", ErrorCode::kInvalidArgument, "unknown class 99");
}

TEST(ModuleLoader, RefusesAPolicyWithoutDecide) {
  expect_refused("null_decide", ErrorCode::kInvalidArgument, "must not be NULL");
}

TEST(ModuleLoader, RefusesEnqueueInputsOnAPolicyThatIsNotGpuSched) {
  expect_refused("misplaced_inputs", ErrorCode::kInvalidArgument,
                 "enqueue_inputs is for gpu_sched policies only");
}

TEST(ModuleLoader, RefusesAnEmptyModuleName) {
  expect_refused("empty_name", ErrorCode::kInvalidArgument, "module name");
}

TEST(ModuleLoader, RefusesAFileThatIsNotThere) {
  auto module = ModuleLoader::open("/nonexistent/libnothing.so");
  ASSERT_FALSE(module.ok());
  EXPECT_EQ(module.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(module.error().message().find("/nonexistent/libnothing.so"), std::string::npos);
}

TEST(PolicyRegistryLoad, RefusesASecondModuleWithTheSameName) {
  MlaasHost host;
  ASSERT_TRUE(host.registry.load_module(test_module("good")).ok());
  auto again = host.registry.load_module(test_module("duplicate"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(again.error().message().find("test_policies"), std::string::npos);
  EXPECT_NE(again.error().message().find(test_module("duplicate")), std::string::npos);
}

TEST(PolicyRegistryLoad, ListsTheBuiltinBaselinesAndLoadedModules) {
  MlaasHost host;
  ASSERT_TRUE(host.registry.load_module(test_module("good")).ok());
  auto modules = host.registry.modules();
  ASSERT_EQ(modules.size(), 2u);
  EXPECT_EQ(modules[0].name, "builtin");
  EXPECT_EQ(modules[0].policies.size(), 4u);
  EXPECT_EQ(modules[1].name, "test_policies");
  EXPECT_EQ(modules[1].path, test_module("good"));
}

}  // namespace
}  // namespace malv::mlaas::testing
