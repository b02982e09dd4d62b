// Per-VM selection, allow-lists, listing and unloading.
#include <gtest/gtest.h>

#include <vector>

#include "test_modules.h"

namespace malv::mlaas::testing {
namespace {

class PolicyRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = host.registry.load_module(test_module("good"));
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  }

  // The item the VM's policy would run first, of one older and one newer.
  std::size_t pick(const std::string& vm) {
    std::vector<malv_gpu_sched_observation> items{gpu_item(1, 100), gpu_item(1, 200)};
    std::vector<malv_gpu_sched_decision> scores(items.size());
    host.runner.decide(vm, std::span(items), std::span(scores));
    return lowest_score(scores);
  }

  MlaasHost host;
};

TEST_F(PolicyRegistryTest, EveryVmStartsOnTheClassBaselines) {
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kGpuSched), "builtin/fifo");
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kMemory), "builtin/lru");
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kPrefetch), "builtin/fixed");
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kCpuSched), "builtin/none");
  EXPECT_EQ(pick("vm1"), 0u);  // fifo: older first
}

TEST_F(PolicyRegistryTest, ASwitchTakesEffectAtTheNextDecisionForThatVmOnly) {
  EXPECT_EQ(pick("vm1"), 0u);
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "newest-first").ok());
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kGpuSched), "test_policies/newest-first");
  EXPECT_EQ(pick("vm1"), 1u);
  EXPECT_EQ(pick("vm2"), 0u);
  host.registry.select_baseline("vm1", PolicyClass::kGpuSched);
  EXPECT_EQ(pick("vm1"), 0u);
}

TEST_F(PolicyRegistryTest, SelectingByQualifiedNameWorksAndUnknownNamesFail) {
  EXPECT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "test_policies/sleepy").ok());
  EXPECT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "builtin/fifo").ok());
  EXPECT_EQ(host.registry.select("vm1", PolicyClass::kGpuSched, "no-such").error().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(host.registry.select("vm1", PolicyClass::kGpuSched, "nomodule/x").error().code(),
            ErrorCode::kNotFound);
}

TEST_F(PolicyRegistryTest, APolicyOfAnotherClassIsRefused) {
  auto wrong = host.registry.select("vm1", PolicyClass::kGpuSched, "test_policies/evict-newest");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(wrong.error().message().find("memory"), std::string::npos);
}

TEST_F(PolicyRegistryTest, AFailingCreateLeavesTheSelectionAsItWas) {
  auto failed = host.registry.select("vm1", PolicyClass::kGpuSched, "create-fails");
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message().find("create()"), std::string::npos);
  EXPECT_EQ(host.registry.selected("vm1", PolicyClass::kGpuSched), "builtin/fifo");
}

TEST_F(PolicyRegistryTest, TheGuestMayPickOnlyWhatTheAdminAllows) {
  ASSERT_TRUE(host.registry.set_allow_list("vm1", PolicyClass::kGpuSched, {"newest-first"}).ok());
  EXPECT_TRUE(
      host.registry.select("vm1", PolicyClass::kGpuSched, "newest-first", Requester::kGuest).ok());
  auto denied = host.registry.select("vm1", PolicyClass::kGpuSched, "sleepy", Requester::kGuest);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code(), ErrorCode::kPermissionDenied);
  // The baseline is always allowed; the admin is never restricted.
  EXPECT_TRUE(
      host.registry.select("vm1", PolicyClass::kGpuSched, "builtin/fifo", Requester::kGuest).ok());
  EXPECT_TRUE(
      host.registry.select("vm1", PolicyClass::kGpuSched, "sleepy", Requester::kAdmin).ok());
  // Another VM has no list: anything loaded goes.
  EXPECT_TRUE(
      host.registry.select("vm2", PolicyClass::kGpuSched, "sleepy", Requester::kGuest).ok());
  host.registry.clear_allow_list("vm1", PolicyClass::kGpuSched);
  EXPECT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "nan", Requester::kGuest).ok());
}

TEST_F(PolicyRegistryTest, AnAllowListNamingAnUnknownPolicyIsRefused) {
  EXPECT_FALSE(host.registry.set_allow_list("vm1", PolicyClass::kGpuSched, {"nope"}).ok());
  EXPECT_FALSE(host.registry.allow_list("vm1", PolicyClass::kGpuSched).has_value());
}

TEST_F(PolicyRegistryTest, ModulesListWhichVmsUseEachPolicy) {
  ASSERT_TRUE(host.registry.select("vm2", PolicyClass::kGpuSched, "newest-first").ok());
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "newest-first").ok());
  auto modules = host.registry.modules();
  const ModuleInfo& test = modules[1];
  auto it = std::find_if(test.policies.begin(), test.policies.end(),
                         [](const PolicyInfo& p) { return p.name == "newest-first"; });
  ASSERT_NE(it, test.policies.end());
  EXPECT_EQ(it->used_by, (std::vector<std::string>{"vm1", "vm2"}));
  EXPECT_EQ(host.registry.vms_using("test_policies"), (std::vector<std::string>{"vm1", "vm2"}));
}

TEST_F(PolicyRegistryTest, UnloadingAModuleInUseIsRefusedAndNamesTheVms) {
  ASSERT_TRUE(host.registry.select("vm7", PolicyClass::kGpuSched, "newest-first").ok());
  ASSERT_TRUE(host.registry.select("vm3", PolicyClass::kMemory, "evict-newest").ok());
  auto refused = host.registry.unload_module("test_policies");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("vm3, vm7"), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(pick("vm7"), 1u);  // still in use
}

TEST_F(PolicyRegistryTest, ForcedUnloadMovesTheVmsToTheBaselineFirst) {
  ASSERT_TRUE(host.registry.select("vm7", PolicyClass::kGpuSched, "newest-first").ok());
  ASSERT_TRUE(host.registry.unload_module("test_policies", UnloadMode::kForce).ok());
  EXPECT_EQ(host.registry.selected("vm7", PolicyClass::kGpuSched), "builtin/fifo");
  EXPECT_EQ(pick("vm7"), 0u);
  EXPECT_EQ(host.registry.modules().size(), 1u);
  // And it can be loaded again.
  EXPECT_TRUE(host.registry.load_module(test_module("good")).ok());
}

TEST_F(PolicyRegistryTest, AnUnusedModuleUnloadsAndTheBuiltinsNever) {
  EXPECT_TRUE(host.registry.unload_module("test_policies").ok());
  EXPECT_EQ(host.registry.unload_module("test_policies").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(host.registry.unload_module("builtin").error().code(), ErrorCode::kPermissionDenied);
}

TEST_F(PolicyRegistryTest, AnInstanceInUseKeepsItsModuleMappedAfterAForcedUnload) {
  ASSERT_TRUE(host.registry.select("vm1", PolicyClass::kGpuSched, "newest-first").ok());
  std::shared_ptr<PolicyInstance> held = host.registry.current("vm1", PolicyClass::kGpuSched);
  ASSERT_TRUE(host.registry.unload_module("test_policies", UnloadMode::kForce).ok());
  // A decision that was in flight can still finish on the held instance.
  std::vector<malv_gpu_sched_observation> items{gpu_item(1, 5)};
  std::vector<malv_gpu_sched_decision> scores(1);
  EXPECT_EQ(held->policy().decide(held->state(), items.data(), 1, scores.data()), MALV_MLAAS_OK);
  EXPECT_EQ(scores[0].score, 1e17 - 5.0);
}

}  // namespace
}  // namespace malv::mlaas::testing
