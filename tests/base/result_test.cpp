#include "malv/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace malv {
namespace {

Result<int> parse_positive(int x) {
  if (x <= 0) return Error(ErrorCode::kInvalidArgument, "not positive");
  return x;
}

Result<int> doubled(int x) {
  MALV_ASSIGN_OR_RETURN(int v, parse_positive(x));
  return v * 2;
}

Status check_both(int a, int b) {
  MALV_TRY(parse_positive(a));
  MALV_TRY_CONTEXT(parse_positive(b), "second argument");
  return ok_status();
}

Result<std::unique_ptr<int>> make_boxed(int x) {
  MALV_ASSIGN_OR_RETURN(auto v, parse_positive(x));
  return std::make_unique<int>(v);
}

TEST(Result, HoldsValueWhenOk) {
  Result<int> r = parse_positive(3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 3);
  EXPECT_EQ(*r, 3);
}

TEST(Result, HoldsErrorWhenFailed) {
  Result<int> r = parse_positive(-1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "not positive");
}

TEST(Result, AssignOrReturnPropagatesErrorAndValue) {
  EXPECT_EQ(doubled(4).value(), 8);
  EXPECT_EQ(doubled(0).error().code(), ErrorCode::kInvalidArgument);
}

TEST(Result, TryPropagatesFirstFailure) {
  EXPECT_TRUE(check_both(1, 2).ok());
  EXPECT_EQ(check_both(-1, 2).error().context().size(), 0u);
}

TEST(Result, TryContextAddsContextLine) {
  Status s = check_both(1, -2);
  ASSERT_FALSE(s.ok());
  ASSERT_EQ(s.error().context().size(), 1u);
  EXPECT_EQ(s.error().context()[0], "second argument");
  EXPECT_EQ(s.error().to_string(), "invalid_argument: not positive (in: second argument)");
}

TEST(Result, WorksWithMoveOnlyTypes) {
  auto r = make_boxed(5);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
  EXPECT_FALSE(make_boxed(-5).ok());
}

TEST(Result, ValueOrGivesFallbackOnError) {
  EXPECT_EQ(parse_positive(-3).value_or(7), 7);
  EXPECT_EQ(parse_positive(2).value_or(7), 2);
}

TEST(Result, AccessingValueOfFailedResultAborts) {
  EXPECT_DEATH({ (void)parse_positive(-1).value(); }, "");
}

}  // namespace
}  // namespace malv
