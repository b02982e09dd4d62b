// malv_memory_basic: lru evicts the least recently used buffer first;
// lookahead evicts the buffer used furthest ahead in the queued work
// (Belady within the visible queue), unqueued buffers first by age, clean
// before dirty at equal distance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>

#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

// The v2 fields after the v1 ones (v3's are checked in memory_learned_test).
static_assert(offsetof(malv_memory_observation, access_count) == 40);
static_assert(offsetof(malv_memory_observation, next_use_ops) == 48);
static_assert(offsetof(malv_memory_observation, next_use_ns) == 56);
static_assert(offsetof(malv_memory_observation, dirty) == 64);
static_assert(offsetof(malv_memory_observation, reserved) == 68);

using MemoryBasic = PolicyHost;

malv_memory_observation queued(std::uint64_t id, std::uint64_t next_use_ops, bool dirty,
                               std::int64_t age_ns = 1'000) {
  malv_memory_observation o{};
  o.vm_id = 1;
  o.buffer_id = id;
  o.bytes = 4096;
  o.age_ns = age_ns;
  o.next_use_ops = next_use_ops;
  o.next_use_ns = static_cast<std::int64_t>(next_use_ops) * 10'000;
  o.dirty = dirty ? 1 : 0;
  return o;
}

malv_memory_observation unqueued(std::uint64_t id, std::int64_t age_ns, bool dirty) {
  malv_memory_observation o = queued(id, MALV_MEMORY_NOT_QUEUED, dirty, age_ns);
  o.next_use_ns = -1;
  return o;
}

class MemoryLookahead : public PolicyHost {
 protected:
  // The buffer ids in the order the manager would evict them under `policy`.
  std::vector<std::uint64_t> eviction_order(const std::string& policy,
                                            const std::vector<malv_memory_observation>& buffers) {
    EXPECT_TRUE(registry.select("vm1", PolicyClass::kMemory, policy).ok()) << policy;
    return testing::eviction_order(runner, "vm1", buffers);
  }
};

TEST_F(MemoryBasic, TheModuleOffersLruAndLookahead) {
  auto modules = registry.modules();
  auto it = std::find_if(modules.begin(), modules.end(),
                         [](const ModuleInfo& m) { return m.name == "malv_memory_basic"; });
  ASSERT_NE(it, modules.end());
  std::vector<std::string> names;
  for (const PolicyInfo& p : it->policies) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"lru", "lookahead"}));
}

TEST_F(MemoryBasic, LruEvictsTheBufferUnusedForLongest) {
  ASSERT_TRUE(registry.select("vm1", PolicyClass::kMemory, "malv_memory_basic/lru").ok());
  std::vector<malv_memory_observation> buffers(3);
  buffers[0].age_ns = 5'000;
  buffers[1].age_ns = 90'000;
  buffers[2].age_ns = 1'000;
  for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].buffer_id = i + 1;
  std::vector<malv_memory_decision> scores(3);
  DecisionReport report = runner.decide("vm1", std::span(buffers), std::span(scores));
  EXPECT_EQ(report.source, DecisionSource::kPolicy);
  EXPECT_EQ(highest_evict_score(scores), 1u);
}

TEST_F(MemoryBasic, TheBareNameLruIsAmbiguousWithTheBaselineAndSaysSo) {
  auto ambiguous = registry.select("vm1", PolicyClass::kMemory, "lru");
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.error().message().find("builtin/lru"), std::string::npos);
  EXPECT_NE(ambiguous.error().message().find("malv_memory_basic/lru"), std::string::npos);
}

TEST_F(MemoryLookahead, EvictsTheBufferWhoseNextUseIsFurthestFirst) {
  // Ages say the opposite of the distances: lookahead ignores them here.
  EXPECT_EQ(eviction_order("lookahead", {queued(1, 3, false, 900), queued(2, 40, false, 100),
                                         queued(3, 0, false, 5'000), queued(4, 7, false, 50)}),
            (std::vector<std::uint64_t>{2, 4, 1, 3}));
}

TEST_F(MemoryLookahead, EvictsUnqueuedBuffersBeforeAnyQueuedOneAndAmongThemTheOldestFirst) {
  EXPECT_EQ(eviction_order("lookahead", {queued(1, 1'000'000, true, 90'000'000),
                                         unqueued(2, 10, true), unqueued(3, 5'000, true),
                                         queued(4, 2, false), unqueued(5, 700, false)}),
            (std::vector<std::uint64_t>{3, 5, 2, 1, 4}));
}

TEST_F(MemoryLookahead, EvictsACleanBufferBeforeADirtyOneAtEqualDistance) {
  EXPECT_EQ(eviction_order("lookahead", {queued(1, 5, true), queued(2, 5, false),
                                         unqueued(3, 800, true), unqueued(4, 800, false)}),
            (std::vector<std::uint64_t>{4, 3, 2, 1}));
  // Distance first, cleanliness only at a tie: a dirty buffer used later
  // still goes before a clean one used sooner.
  EXPECT_EQ(eviction_order("lookahead", {queued(1, 4, false), queued(2, 5, true)}),
            (std::vector<std::uint64_t>{2, 1}));
}

TEST_F(MemoryLookahead, ExtremeDistancesAndAgesStayOrderedAndWithinTheScoreLimit) {
  const std::vector<malv_memory_observation> buffers{
      queued(1, MALV_MEMORY_NOT_QUEUED - 1, true),  // furthest possible queued use
      unqueued(2, INT64_MAX, false),                // absurd age
      unqueued(3, INT64_MIN, true),                 // clock went backwards
      queued(4, 0, false),                          // the very next op
      unqueued(5, 100'000'000'000'000'000, true),   // 3 years
  };
  for (const std::string policy : {"lookahead", "malv_memory_basic/lru"}) {
    ASSERT_TRUE(registry.select("vm1", PolicyClass::kMemory, policy).ok());
    std::vector<malv_memory_decision> scores(buffers.size());
    DecisionReport report = runner.decide("vm1", std::span(buffers), std::span(scores));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << policy << ": " << report.detail;
    for (const malv_memory_decision& d : scores) {
      EXPECT_LE(std::abs(d.evict_score), MALV_MLAAS_SCORE_LIMIT) << policy;
    }
  }
  EXPECT_EQ(eviction_order("lookahead", buffers), (std::vector<std::uint64_t>{2, 5, 3, 1, 4}));
}

}  // namespace
}  // namespace malv::mlaas::testing
