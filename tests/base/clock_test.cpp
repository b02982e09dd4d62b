#include "base/clock.h"

#include <gtest/gtest.h>

#include <thread>

namespace malv {
namespace {

using namespace std::chrono_literals;

TEST(Clock, MonotonicNowNeverGoesBack) {
  std::int64_t previous = mono_now_ns();
  for (int i = 0; i < 1000; ++i) {
    std::int64_t now = mono_now_ns();
    EXPECT_GE(now, previous);
    previous = now;
  }
}

TEST(Clock, StopwatchMeasuresAtLeastTheSleep) {
  Stopwatch watch;
  std::this_thread::sleep_for(2ms);
  EXPECT_GE(watch.elapsed_ns(), 2'000'000);
  watch.restart();
  EXPECT_LT(watch.elapsed_ns(), 2'000'000'000);
}

TEST(Clock, DeadlineExpiresAndRemainingReachesZero) {
  Deadline d = Deadline::after(1ms);
  std::this_thread::sleep_for(2ms);
  EXPECT_TRUE(d.expired());
  EXPECT_EQ(d.remaining(), Nanos::zero());
  EXPECT_FALSE(Deadline::never().expired());
  EXPECT_GT(Deadline::after(1h).remaining(), 59min);
}

}  // namespace
}  // namespace malv
