// MemoryPolicies: LruMemoryPolicies scores by age; MlaasMemoryPolicies asks
// the VM's selected memory module through the PolicyRunner, falls back to
// LRU when the module fails (and says so), passes feedback on, and may be
// called from several threads at once for different VMs.
#include "vgpu/memory_policies.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mlaas/feature_registry.h"
#include "mlaas/host_services.h"
#include "mlaas/policy_dir.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"
#include "vgpu/mlaas_memory_policies.h"

namespace malv::vgpu {
namespace {

using mlaas::PolicyClass;

malv_memory_observation candidate(std::uint64_t id, std::int64_t age_ns,
                                  std::uint64_t next_use_ops) {
  malv_memory_observation o{};
  o.vm_id = 1;
  o.buffer_id = id;
  o.bytes = 1 << 20;
  o.age_ns = age_ns;
  o.access_count = 3;
  o.next_use_ops = next_use_ops;
  o.next_use_ns =
      next_use_ops == MALV_MEMORY_NOT_QUEUED ? -1 : static_cast<std::int64_t>(next_use_ops) * 1000;
  o.dirty = 1;
  return o;
}

// Ages and distances disagree: LRU evicts buffer 1 (oldest), lookahead
// buffer 3 (used furthest ahead).
const std::vector<malv_memory_observation> kCandidates{
    candidate(1, 90'000, 1), candidate(2, 50'000, 0), candidate(3, 10'000, 12)};

std::size_t first_victim(const std::vector<double>& scores) {
  return static_cast<std::size_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
}

class MlaasMemoryPoliciesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto basic = registry.load_module(mlaas::policy_module_path("malv_memory_basic"));
    ASSERT_TRUE(basic.ok()) << basic.error().to_string();
    auto failing = registry.load_module(MALV_TEST_FAILING_MODULE);
    ASSERT_TRUE(failing.ok()) << failing.error().to_string();
  }

  void select(const std::string& vm, const std::string& policy) {
    auto selected = registry.select(vm, PolicyClass::kMemory, policy);
    ASSERT_TRUE(selected.ok()) << selected.error().to_string();
  }

  mlaas::FeatureRegistry features;
  mlaas::HostServices services{features, nullptr};
  mlaas::PolicyRegistry registry{services.table()};
  // A generous budget: these tests are about errors, not lateness.
  mlaas::PolicyRunner runner{registry,
                             mlaas::GuardrailOptions::every_class(std::chrono::seconds(30), 1000)};
  MlaasMemoryPolicies policies{runner};
  std::vector<double> scores = std::vector<double>(kCandidates.size());
};

TEST(LruMemoryPolicies, EvictsTheOldestBufferFirstAndNeverFallsBack) {
  LruMemoryPolicies lru;
  std::vector<double> scores(kCandidates.size());
  EXPECT_FALSE(lru.score("vm1", kCandidates, scores));
  EXPECT_EQ(first_victim(scores), 0u);
  EXPECT_EQ(scores[1], 50'000.0);
}

TEST_F(MlaasMemoryPoliciesTest, TheLookaheadModuleEvictsTheBufferUsedFurthestAhead) {
  select("vm1", "malv_memory_basic/lookahead");
  EXPECT_FALSE(policies.score("vm1", kCandidates, scores));
  EXPECT_EQ(first_victim(scores), 2u);
  EXPECT_EQ(runner.counters("vm1", "malv_memory_basic").decisions, 1u);
  EXPECT_EQ(runner.counters("vm1", "malv_memory_basic").fallbacks, 0u);
}

TEST_F(MlaasMemoryPoliciesTest, AVmWithoutASelectionGetsTheLruBaselineWhichIsNoFallback) {
  EXPECT_FALSE(policies.score("vm1", kCandidates, scores));
  EXPECT_EQ(first_victim(scores), 0u);
}

TEST_F(MlaasMemoryPoliciesTest, AFailingModuleFallsBackToLruAndSaysSo) {
  select("vm1", "test_policies/memory-erroring");
  EXPECT_TRUE(policies.score("vm1", kCandidates, scores));
  EXPECT_EQ(first_victim(scores), 0u) << "LRU: the oldest buffer";
  EXPECT_EQ(scores[1], 50'000.0);
  const mlaas::PolicyCounters counters = runner.counters("vm1", "test_policies");
  EXPECT_EQ(counters.fallbacks, 1u);
  EXPECT_EQ(counters.errors, 1u);
}

TEST_F(MlaasMemoryPoliciesTest, NoCandidatesAskNobody) {
  select("vm1", "test_policies/memory-erroring");
  EXPECT_FALSE(policies.score("vm1", {}, {}));
  EXPECT_EQ(runner.counters("vm1", "test_policies").decisions, 0u);
}

TEST_F(MlaasMemoryPoliciesTest, FeedbackReachesTheVmsPolicy) {
  select("vm1", "test_policies/memory-erroring");
  policies.feedback("vm1", malv_memory_outcome{kCandidates[0], 250'000});
  EXPECT_EQ(runner.counters("vm1", "test_policies").feedbacks, 1u);
}

TEST_F(MlaasMemoryPoliciesTest, SeveralVmsMayBeScoredFromSeveralThreadsAtOnce) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 500;
  for (int t = 0; t < kThreads; ++t) {
    select("vm" + std::to_string(t),
           t % 2 == 0 ? "malv_memory_basic/lookahead" : "test_policies/memory-erroring");
  }
  std::atomic<int> wrong{0};
  std::atomic<int> failing_module_fallbacks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string vm = "vm" + std::to_string(t);
      std::vector<double> mine(kCandidates.size());
      for (int i = 0; i < kRounds; ++i) {
        const bool fell_back = policies.score(vm, kCandidates, mine);
        if (fell_back && t % 2 == 1) failing_module_fallbacks.fetch_add(1);
        // lookahead VMs evict buffer 3 (or, if a busy machine made the call
        // late, fall back like the failing ones do): LRU evicts buffer 1.
        if (first_victim(mine) != (fell_back ? 0u : 2u)) wrong.fetch_add(1);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failing_module_fallbacks.load(), kThreads / 2 * kRounds);
}

}  // namespace
}  // namespace malv::vgpu
