// malv_memory_basic: lru evicts the least recently used buffer first.
#include <gtest/gtest.h>

#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

using MemoryBasic = PolicyHost;

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

}  // namespace
}  // namespace malv::mlaas::testing
