#include "base/log.h"

#include <gtest/gtest.h>

namespace malv {
namespace {

TEST(Log, ParsesKnownLevelNames) {
  bool ok = false;
  EXPECT_EQ(log::parse_level("debug", &ok), log::Level::kDebug);
  EXPECT_TRUE(ok);
  EXPECT_EQ(log::parse_level("warning", &ok), log::Level::kWarn);
  EXPECT_EQ(log::parse_level("off", &ok), log::Level::kOff);
}

TEST(Log, UnknownLevelNameFallsBackToInfoAndSaysSo) {
  bool ok = true;
  EXPECT_EQ(log::parse_level("loud", &ok), log::Level::kInfo);
  EXPECT_FALSE(ok);
}

TEST(Log, SetLevelIsObservable) {
  log::Level before = log::level();
  log::set_level(log::Level::kError);
  EXPECT_EQ(log::level(), log::Level::kError);
  EXPECT_FALSE(log::logger().should_log(spdlog::level::info));
  log::info("test", "suppressed {}", 1);
  log::set_level(before);
}

}  // namespace
}  // namespace malv
