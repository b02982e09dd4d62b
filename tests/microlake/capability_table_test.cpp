#include "microlake/capability_table.h"

#include <gtest/gtest.h>

namespace malv::microlake {
namespace {

struct Thing {
  int value = 0;
};

TEST(CapabilityTable, IssuedHandleResolvesToItsObject) {
  CapabilityTable<Thing> table(ObjectType::kBuffer, 7, 16);
  RawHandle h = table.insert(std::make_unique<Thing>(Thing{42}), kRightsAll).value();
  auto thing = table.lookup(h, kRightRead);
  ASSERT_TRUE(thing.ok());
  EXPECT_EQ(thing.value()->value, 42);
}

TEST(CapabilityTable, FreedHandleIsRejectedWithStaleHandle) {
  CapabilityTable<Thing> table(ObjectType::kBuffer, 7, 16);
  RawHandle h = table.insert(std::make_unique<Thing>(), kRightsAll).value();
  ASSERT_TRUE(table.remove(h, kRightDestroy).ok());
  auto r = table.lookup(h, kRightRead);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kStaleHandle);
  EXPECT_NE(r.error().message().find("freed"), std::string::npos);
}

TEST(CapabilityTable, ReusedSlotDoesNotRespondToTheOldHandle) {
  CapabilityTable<Thing> table(ObjectType::kBuffer, 7, 16);
  RawHandle old_handle = table.insert(std::make_unique<Thing>(Thing{1}), kRightsAll).value();
  ASSERT_TRUE(table.remove(old_handle, kRightDestroy).ok());
  RawHandle new_handle = table.insert(std::make_unique<Thing>(Thing{2}), kRightsAll).value();
  EXPECT_EQ(decode_handle(old_handle).slot, decode_handle(new_handle).slot);
  EXPECT_EQ(table.lookup(old_handle, 0).error().code(), ErrorCode::kStaleHandle);
  EXPECT_EQ(table.lookup(new_handle, 0).value()->value, 2);
}

TEST(CapabilityTable, HandleFromAnotherSessionIsRejected) {
  CapabilityTable<Thing> mine(ObjectType::kBuffer, 1, 16);
  CapabilityTable<Thing> theirs(ObjectType::kBuffer, 2, 16);
  (void)mine.insert(std::make_unique<Thing>(), kRightsAll);
  RawHandle foreign = theirs.insert(std::make_unique<Thing>(), kRightsAll).value();
  auto r = mine.lookup(foreign, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kStaleHandle);
  EXPECT_NE(r.error().message().find("another session"), std::string::npos);
}

TEST(CapabilityTable, WrongTypeIsRejected) {
  CapabilityTable<Thing> buffers(ObjectType::kBuffer, 1, 16);
  CapabilityTable<Thing> streams(ObjectType::kStream, 1, 16);
  RawHandle stream = streams.insert(std::make_unique<Thing>(), kRightsAll).value();
  EXPECT_EQ(buffers.lookup(stream, 0).error().code(), ErrorCode::kWrongHandleType);
}

TEST(CapabilityTable, ForgedHandlesAreRejected) {
  CapabilityTable<Thing> table(ObjectType::kBuffer, 3, 16);
  (void)table.insert(std::make_unique<Thing>(), kRightsAll);
  EXPECT_EQ(table.lookup(0, 0).error().code(), ErrorCode::kInvalidArgument);
  RawHandle never = encode_handle({ObjectType::kBuffer, 3, 1, 999});
  EXPECT_EQ(table.lookup(never, 0).error().code(), ErrorCode::kStaleHandle);
  RawHandle wrong_generation = encode_handle({ObjectType::kBuffer, 3, 77, 0});
  EXPECT_EQ(table.lookup(wrong_generation, 0).error().code(), ErrorCode::kStaleHandle);
}

TEST(CapabilityTable, MissingRightsAreRefused) {
  CapabilityTable<Thing> table(ObjectType::kBuffer, 3, 16);
  RawHandle h = table.insert(std::make_unique<Thing>(), kRightRead).value();
  EXPECT_TRUE(table.lookup(h, kRightRead).ok());
  EXPECT_EQ(table.lookup(h, kRightWrite).error().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(table.remove(h, kRightDestroy).error().code(), ErrorCode::kPermissionDenied);
}

TEST(CapabilityTable, LimitIsEnforced) {
  CapabilityTable<Thing> table(ObjectType::kEvent, 3, 2);
  EXPECT_TRUE(table.insert(std::make_unique<Thing>(), kRightsAll).ok());
  EXPECT_TRUE(table.insert(std::make_unique<Thing>(), kRightsAll).ok());
  EXPECT_EQ(table.insert(std::make_unique<Thing>(), kRightsAll).error().code(),
            ErrorCode::kResourceExhausted);
}

}  // namespace
}  // namespace malv::microlake
