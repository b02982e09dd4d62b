// malv_prefetch_basic/adaptive: the staging depth grows by half when the
// consumer stalled, shrinks by one after three calm periods, covers a
// producer slower than the consumer, and stays within [1, max_depth].
#include <gtest/gtest.h>

#include "policy_host.h"

namespace malv::mlaas::testing {
namespace {

malv_prefetch_observation period(std::uint32_t depth, std::int64_t stall_ns,
                                 double consumption = 100, double production = 1000) {
  malv_prefetch_observation o{};
  o.vm_id = 1;
  o.stream_id = 0;
  o.current_depth = depth;
  o.max_depth = 8;
  o.consumption_per_s = consumption;
  o.production_per_s = production;
  o.consumer_stall_ns = stall_ns;
  return o;
}

class PrefetchAdaptive : public PolicyHost {
 protected:
  void SetUp() override {
    PolicyHost::SetUp();
    ASSERT_TRUE(
        registry.select("vm1", PolicyClass::kPrefetch, "malv_prefetch_basic/adaptive").ok());
  }
  std::uint32_t decide(const malv_prefetch_observation& o) {
    malv_prefetch_decision d{};
    DecisionReport report = runner.decide("vm1", std::span(&o, 1), std::span(&d, 1));
    EXPECT_EQ(report.source, DecisionSource::kPolicy) << report.detail;
    return d.depth;
  }
};

TEST_F(PrefetchAdaptive, AStallGrowsTheDepthByHalfUpToTheCap) {
  EXPECT_EQ(decide(period(1, 5'000)), 2u);
  EXPECT_EQ(decide(period(2, 5'000)), 3u);
  EXPECT_EQ(decide(period(4, 5'000)), 6u);
  EXPECT_EQ(decide(period(6, 5'000)), 8u);  // 9, capped
  EXPECT_EQ(decide(period(8, 5'000)), 8u);
}

TEST_F(PrefetchAdaptive, ThreeCalmPeriodsShrinkItByOneNeverBelowOne) {
  EXPECT_EQ(decide(period(4, 0)), 4u);
  EXPECT_EQ(decide(period(4, 0)), 4u);
  EXPECT_EQ(decide(period(4, 0)), 3u);
  // A stall restarts the count.
  EXPECT_EQ(decide(period(3, 0)), 3u);
  EXPECT_EQ(decide(period(3, 1)), 4u);
  EXPECT_EQ(decide(period(4, 0)), 4u);
  EXPECT_EQ(decide(period(4, 0)), 4u);
  EXPECT_EQ(decide(period(4, 0)), 3u);
  for (int i = 0; i < 12; ++i) decide(period(1, 0));
  EXPECT_EQ(decide(period(1, 0)), 1u);
}

TEST_F(PrefetchAdaptive, AProducerSlowerThanTheConsumerIsCoveredForAPeriod) {
  // Consumption 3.5x production: at least ceil(3.5) + 1 = 5 staged.
  EXPECT_EQ(decide(period(1, 0, 350, 100)), 5u);
  // Beyond the cap, the cap.
  EXPECT_EQ(decide(period(1, 0, 5000, 100)), 8u);
}

}  // namespace
}  // namespace malv::mlaas::testing
