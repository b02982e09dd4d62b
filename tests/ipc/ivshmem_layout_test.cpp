#include "ipc/ivshmem_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <vector>

namespace malv::ipc {
namespace {

using ::testing::HasSubstr;

// A region in ordinary memory, aligned as a mapping would be.
struct Region {
  explicit Region(std::size_t bytes) : words((bytes + 7) / 8), bytes(bytes) {}
  std::span<std::byte> span() { return {reinterpret_cast<std::byte*>(words.data()), bytes}; }
  IvshmemHeader& header() { return ivshmem_header(span()); }
  std::vector<std::uint64_t> words;
  std::size_t bytes;
};

IvshmemLayout small_layout(std::uint32_t slots = 3) {
  auto layout = IvshmemLayout::compute(slots, 16, 32, 8192);
  EXPECT_TRUE(layout.ok()) << layout.error().to_string();
  return layout.ok() ? *layout : IvshmemLayout{};
}

TEST(IvshmemLayout, RefusesNoSlotsAndMoreSlotsThanTheHeaderHolds) {
  for (std::uint32_t slots : {0u, kIvshmemMaxSlots + 1, 1000u}) {
    auto layout = IvshmemLayout::compute(slots, 16, 32, 8192);
    ASSERT_FALSE(layout.ok()) << slots;
    EXPECT_EQ(layout.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(layout.error().message(), HasSubstr(std::to_string(slots)));
  }
  EXPECT_TRUE(IvshmemLayout::compute(1, 16, 32, 8192).ok());
  EXPECT_TRUE(IvshmemLayout::compute(kIvshmemMaxSlots, 16, 32, 8192).ok());
}

TEST(IvshmemLayout, RefusesChannelSizesThatChannelLayoutRefuses) {
  EXPECT_EQ(IvshmemLayout::compute(2, 100, 32, 8192).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(IvshmemLayout::compute(2, 16, 32, (1ull << 30) + 1).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(IvshmemLayout, TotalIsAPowerOfTwoThatHoldsTheHeaderAndEverySlot) {
  for (std::uint32_t slots : {1u, 2u, 3u, 7u, 32u}) {
    for (std::uint64_t arena : {4096ull, 8192ull + 4096, 1ull << 20}) {
      auto layout = IvshmemLayout::compute(slots, 64, 128, arena);
      ASSERT_TRUE(layout.ok()) << layout.error().to_string();
      EXPECT_TRUE(std::has_single_bit(layout->total_bytes)) << layout->total_bytes;
      EXPECT_EQ(layout->slot_count, slots);
      EXPECT_EQ(layout->slot_bytes, layout->channel.total_bytes);
      EXPECT_EQ(layout->slot_bytes % 4096, 0u);
      EXPECT_GE(layout->slots_offset, sizeof(IvshmemHeader));
      EXPECT_GE(layout->slots_offset, kIvshmemHeaderBytes);
      const std::uint64_t used = layout->slots_offset + slots * layout->slot_bytes;
      EXPECT_GE(layout->total_bytes, used);
      EXPECT_LT(layout->total_bytes / 2, used) << "not the smallest power of two";
    }
  }
}

TEST(IvshmemLayout, SlotsDoNotOverlapAndFitTheRegion) {
  const IvshmemLayout layout = small_layout(5);
  Region region(layout.total_bytes);
  for (std::uint32_t i = 0; i < layout.slot_count; ++i) {
    EXPECT_EQ(layout.slot_offset(i), layout.slots_offset + i * layout.slot_bytes);
    if (i + 1 < layout.slot_count) {
      EXPECT_LE(layout.slot_offset(i) + layout.slot_bytes, layout.slot_offset(i + 1));
    }
    EXPECT_LE(layout.slot_offset(i) + layout.slot_bytes, layout.total_bytes);
    const std::span<std::byte> memory = layout.slot_memory(region.span(), i);
    EXPECT_EQ(memory.data(), region.span().data() + layout.slot_offset(i));
    EXPECT_EQ(memory.size(), layout.slot_bytes);
  }
}

TEST(IvshmemLayout, HeaderWrittenByTheHostReadsBackAsTheSameLayout) {
  const IvshmemLayout layout = small_layout(3);
  Region region(layout.total_bytes);
  std::memset(region.span().data(), 0xAB, region.bytes);  // whatever was there before
  initialize_ivshmem_header(region.span(), layout, "vm-round-trip", 7);
  const IvshmemHeader& header = region.header();
  EXPECT_EQ(header.magic, kIvshmemMagic);
  EXPECT_EQ(header.version, kIvshmemVersion);
  EXPECT_EQ(header.host_peer_id, 7u);
  EXPECT_STREQ(header.vm_name, "vm-round-trip");
  for (const SlotControl& slot : header.slots) {
    EXPECT_EQ(slot.state.load(), static_cast<std::uint32_t>(SlotState::kFree));
    EXPECT_EQ(slot.heartbeat.load(), 0u);
  }
  auto read = read_ivshmem_header(region.span());
  ASSERT_TRUE(read.ok()) << read.error().to_string();
  EXPECT_EQ(*read, layout);
}

TEST(IvshmemLayout, AVmNameTooLongForTheHeaderIsCutAndStaysTerminated) {
  const IvshmemLayout layout = small_layout(1);
  Region region(layout.total_bytes);
  initialize_ivshmem_header(region.span(), layout, std::string(500, 'v'), 0);
  const IvshmemHeader& header = region.header();
  EXPECT_EQ(strnlen(header.vm_name, sizeof(header.vm_name)), sizeof(header.vm_name) - 1);
  EXPECT_TRUE(read_ivshmem_header(region.span()).ok());
}

class IvshmemHeaderRefusal : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = small_layout(3);
    region_ = std::make_unique<Region>(layout_.total_bytes);
    initialize_ivshmem_header(region_->span(), layout_, "vm1", 0);
  }
  Error refused() {
    auto read = read_ivshmem_header(region_->span());
    EXPECT_FALSE(read.ok()) << "a forged header was accepted";
    return read.ok() ? Error(ErrorCode::kOk, "accepted") : read.error();
  }
  IvshmemHeader& header() { return region_->header(); }

  IvshmemLayout layout_;
  std::unique_ptr<Region> region_;
};

TEST_F(IvshmemHeaderRefusal, BadMagicIsRefusedNamingTheMagic) {
  header().magic = 0x12345678;
  const Error error = refused();
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(error.message(), HasSubstr("magic"));
  EXPECT_THAT(error.message(), HasSubstr("0x12345678"));
}

TEST_F(IvshmemHeaderRefusal, AnotherVersionIsRefusedAsUnimplemented) {
  header().version = kIvshmemVersion + 1;
  const Error error = refused();
  EXPECT_EQ(error.code(), ErrorCode::kUnimplemented);
  EXPECT_THAT(error.message(), HasSubstr("version " + std::to_string(kIvshmemVersion + 1)));
}

TEST_F(IvshmemHeaderRefusal, SlotBytesThatDoNotRecomputeAreRefused) {
  header().slot_bytes += 4096;
  const Error error = refused();
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(error.message(), HasSubstr("sizes do not match"));
}

TEST_F(IvshmemHeaderRefusal, TotalBytesThatDoNotRecomputeAreRefused) {
  header().total_bytes /= 2;
  const Error error = refused();
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(error.message(), HasSubstr("sizes do not match"));
}

TEST_F(IvshmemHeaderRefusal, SlotsOffsetThatDoesNotRecomputeIsRefused) {
  header().slots_offset = 4096;  // would put slot 0 on top of the slot table
  const Error error = refused();
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(error.message(), HasSubstr("sizes do not match"));
}

TEST_F(IvshmemHeaderRefusal, ASlotCountOutOfRangeIsRefused) {
  for (std::uint32_t slots : {0u, kIvshmemMaxSlots + 1, ~0u}) {
    header().slot_count = slots;
    EXPECT_EQ(refused().code(), ErrorCode::kInvalidArgument) << slots;
  }
}

TEST_F(IvshmemHeaderRefusal, ARegionSmallerThanTheLayoutIsRefusedNamingBothSizes) {
  const std::span<std::byte> shorter = region_->span().first(layout_.total_bytes / 2);
  auto read = read_ivshmem_header(shorter);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(read.error().message(), HasSubstr(std::to_string(layout_.total_bytes)));
  EXPECT_THAT(read.error().message(), HasSubstr(std::to_string(shorter.size())));
}

TEST_F(IvshmemHeaderRefusal, ARegionWithNoRoomForTheHeaderIsRefused) {
  for (std::size_t bytes : {std::size_t{0}, std::size_t{64}, sizeof(IvshmemHeader) - 1,
                            std::size_t{kIvshmemHeaderBytes - 1}}) {
    auto read = read_ivshmem_header(region_->span().first(bytes));
    ASSERT_FALSE(read.ok()) << bytes;
    EXPECT_EQ(read.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(read.error().message(), HasSubstr("no room for its header"));
  }
}

// A host (or anyone who wrote the region) claiming slots far larger than
// the BAR: the sizes are consistent, so only the region's size stops the
// guest from carving slots out of memory it does not have.
TEST_F(IvshmemHeaderRefusal, AHeaderClaimingAHugeArenaIsRefusedNotMapped) {
  auto huge = IvshmemLayout::compute(kIvshmemMaxSlots, 1u << 16, 1u << 16, 1ull << 30);
  ASSERT_TRUE(huge.ok());
  IvshmemHeader& h = header();
  h.slot_count = huge->slot_count;
  h.sq_entries = huge->channel.sq_entries;
  h.cq_entries = huge->channel.cq_entries;
  h.arena_bytes = huge->channel.arena_bytes;
  h.slot_bytes = huge->slot_bytes;
  h.slots_offset = huge->slots_offset;
  h.total_bytes = huge->total_bytes;
  const Error error = refused();
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(error.message(), HasSubstr(std::to_string(huge->total_bytes)));
}

TEST_F(IvshmemHeaderRefusal, AnArenaBeyondWhatAChannelMayHaveIsRefused) {
  IvshmemHeader& h = header();
  h.arena_bytes = 1ull << 40;
  EXPECT_EQ(refused().code(), ErrorCode::kInvalidArgument);
  h.arena_bytes = ~0ull;
  EXPECT_EQ(refused().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace malv::ipc
