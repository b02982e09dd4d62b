#include "ipc/shared_region.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

namespace malv::ipc {
namespace {

TEST(SharedRegion, CreatedRegionIsZeroFilledAndCannotBeResized) {
  auto region = SharedRegion::create("malv-test", 8192);
  ASSERT_TRUE(region.ok()) << region.error().to_string();
  EXPECT_EQ(region->size(), 8192u);
  for (std::size_t i = 0; i < region->size(); ++i) ASSERT_EQ(region->data()[i], std::byte{0});
  EXPECT_TRUE(region->sealed_against_resize());
  EXPECT_NE(::ftruncate(region->fd(), 4096), 0);   // cannot shrink under a peer's mapping
  EXPECT_NE(::ftruncate(region->fd(), 16384), 0);  // nor grow
}

TEST(SharedRegion, ZeroBytesIsInvalidArgument) {
  auto region = SharedRegion::create("malv-test", 0);
  ASSERT_FALSE(region.ok());
  EXPECT_EQ(region.error().code(), ErrorCode::kInvalidArgument);
}

TEST(SharedRegion, MappingTheFdAgainSeesTheSameBytes) {
  auto region = SharedRegion::create("malv-test", 4096);
  ASSERT_TRUE(region.ok());
  std::memcpy(region->data(), "shared", 7);
  auto other = SharedRegion::map_fd(::dup(region->fd()), 4096);
  ASSERT_TRUE(other.ok()) << other.error().to_string();
  EXPECT_STREQ(reinterpret_cast<const char*>(other->data()), "shared");
  other->data()[0] = std::byte{'S'};
  EXPECT_EQ(region->data()[0], std::byte{'S'});
}

TEST(SharedRegion, MapFdRejectsAWrongSize) {
  auto region = SharedRegion::create("malv-test", 4096);
  ASSERT_TRUE(region.ok());
  auto bigger = SharedRegion::map_fd(::dup(region->fd()), 8192);
  ASSERT_FALSE(bigger.ok());
  EXPECT_EQ(bigger.error().code(), ErrorCode::kInvalidArgument);
  auto smaller = SharedRegion::map_fd(::dup(region->fd()), 1024);
  ASSERT_FALSE(smaller.ok());
  EXPECT_EQ(smaller.error().code(), ErrorCode::kInvalidArgument);
}

TEST(SharedRegion, MovingTransfersOwnership) {
  auto region = SharedRegion::create("malv-test", 4096);
  ASSERT_TRUE(region.ok());
  SharedRegion a = std::move(region).value();
  int fd = a.fd();
  SharedRegion b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(b.fd(), fd);
  EXPECT_TRUE(b.valid());
}

}  // namespace
}  // namespace malv::ipc
