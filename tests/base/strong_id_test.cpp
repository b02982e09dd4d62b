#include "base/strong_id.h"

#include <gtest/gtest.h>

#include <type_traits>
#include <unordered_set>

namespace malv {
namespace {

struct AppleTag {};
struct PearTag {};
using AppleId = StrongId<AppleTag>;
using PearId = StrongId<PearTag, std::uint32_t>;

TEST(StrongId, DistinctTagsDoNotConvert) {
  static_assert(!std::is_convertible_v<AppleId, PearId>);
  static_assert(!std::is_convertible_v<std::uint64_t, AppleId>);
  static_assert(!std::is_convertible_v<AppleId, std::uint64_t>);
  SUCCEED();
}

TEST(StrongId, DefaultIsInvalidAndCompares) {
  EXPECT_FALSE(AppleId{}.valid());
  EXPECT_TRUE(AppleId{1}.valid());
  EXPECT_LT(AppleId{1}, AppleId{2});
  EXPECT_EQ(PearId{7}.value(), 7u);
}

TEST(StrongId, IsHashable) {
  std::unordered_set<AppleId> set{AppleId{1}, AppleId{2}, AppleId{1}};
  EXPECT_EQ(set.size(), 2u);
}

}  // namespace
}  // namespace malv
