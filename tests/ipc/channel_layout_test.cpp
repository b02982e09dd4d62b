#include "ipc/channel_layout.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace malv::ipc {
namespace {

void expect_invalid(std::uint32_t sq, std::uint32_t cq, std::uint64_t arena) {
  auto layout = ChannelLayout::compute(sq, cq, arena);
  ASSERT_FALSE(layout.ok()) << sq << " " << cq << " " << arena;
  EXPECT_EQ(layout.error().code(), ErrorCode::kInvalidArgument);
}

TEST(ChannelLayout, RejectsRingSizesThatAreNotPowersOfTwo) {
  expect_invalid(0, 64, 1 << 20);
  expect_invalid(100, 64, 1 << 20);
  expect_invalid(64, 3, 1 << 20);
}

TEST(ChannelLayout, RejectsOversizeRingsAndArenas) {
  expect_invalid(1u << 17, 64, 1 << 20);
  expect_invalid(64, 1u << 31, 1 << 20);
  expect_invalid(64, 64, (1ull << 30) + 1);
  expect_invalid(64, 64, ~0ull);
  expect_invalid(64, 64, 4095);
}

TEST(ChannelLayout, PlacesEverySectionOnAPageBoundary) {
  auto layout = ChannelLayout::compute(256, 512, 65536 + 100);
  ASSERT_TRUE(layout.ok()) << layout.error().to_string();
  EXPECT_EQ(layout->sq_offset, 4096u);
  EXPECT_EQ(layout->cq_offset, 4096u + 256 * 64);
  EXPECT_EQ(layout->arena_offset, 4096u + 256 * 64 + 512 * 32);
  EXPECT_EQ(layout->arena_bytes, 65536u + 100);
  EXPECT_EQ(layout->total_bytes % 4096, 0u);
  EXPECT_GE(layout->total_bytes, layout->arena_offset + layout->arena_bytes);
  auto small = ChannelLayout::compute(1, 1, 4096);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->cq_offset, 8192u);
  EXPECT_EQ(small->arena_offset, 12288u);
  EXPECT_EQ(small->total_bytes, 16384u);
  auto largest = ChannelLayout::compute(1u << 16, 1u << 16, 1ull << 30);
  ASSERT_TRUE(largest.ok());
  EXPECT_EQ(largest->total_bytes, 4096u + (1u << 22) + (1u << 21) + (1ull << 30));
}

TEST(ChannelView, RejectsALayoutThatDoesNotFitTheRegion) {
  auto layout = ChannelLayout::compute(64, 64, 8192);
  ASSERT_TRUE(layout.ok());
  auto region = SharedRegion::create("malv-test", layout->total_bytes - 4096);
  ASSERT_TRUE(region.ok());
  auto view = ChannelView::over(*region, *layout);
  ASSERT_FALSE(view.ok());
  EXPECT_EQ(view.error().code(), ErrorCode::kInvalidArgument);
}

TEST(ChannelView, RejectsForgedOffsets) {
  auto layout = ChannelLayout::compute(64, 64, 8192);
  ASSERT_TRUE(layout.ok());
  auto region = SharedRegion::create("malv-test", layout->total_bytes);
  ASSERT_TRUE(region.ok());
  ChannelLayout forged = *layout;
  forged.arena_offset += 1ull << 40;  // would point far outside the mapping
  auto view = ChannelView::over(*region, forged);
  ASSERT_FALSE(view.ok());
  EXPECT_EQ(view.error().code(), ErrorCode::kInvalidArgument);
}

TEST(ChannelView, BothSidesOfAChannelShareRingsAndArena) {
  auto layout = ChannelLayout::compute(16, 32, 4096);
  ASSERT_TRUE(layout.ok());
  auto host_region = SharedRegion::create("malv-test", layout->total_bytes);
  ASSERT_TRUE(host_region.ok());
  auto host = ChannelView::over(*host_region, *layout);
  ASSERT_TRUE(host.ok());
  initialize_control_block(*host, *layout);

  auto guest_region = SharedRegion::map_fd(::dup(host_region->fd()), layout->total_bytes);
  ASSERT_TRUE(guest_region.ok());
  auto guest = ChannelView::over(*guest_region, *layout);
  ASSERT_TRUE(guest.ok());
  ASSERT_TRUE(check_control_block(*guest, *layout).ok());

  RingProducer<wire::Command> submit(guest->sq_header, guest->sq_slots, layout->sq_entries);
  RingConsumer<wire::Command> receive(host->sq_header, host->sq_slots, layout->sq_entries);
  wire::Command cmd{};
  cmd.opcode = static_cast<std::uint16_t>(wire::Opcode::kNop);
  cmd.tag = 42;
  ASSERT_TRUE(*submit.try_push(std::span<const wire::Command>(&cmd, 1)));
  ASSERT_EQ(*receive.available(), 1u);
  EXPECT_EQ(receive.read(0).tag, 42u);

  RingProducer<wire::Completion> complete(host->cq_header, host->cq_slots, layout->cq_entries);
  RingConsumer<wire::Completion> reap(guest->cq_header, guest->cq_slots, layout->cq_entries);
  wire::Completion done{};
  done.tag = 42;
  ASSERT_TRUE(*complete.try_push(std::span<const wire::Completion>(&done, 1)));
  ASSERT_EQ(*reap.available(), 1u);
  EXPECT_EQ(reap.read(0).tag, 42u);

  host->arena[100] = std::byte{7};
  EXPECT_EQ(guest->arena[100], std::byte{7});
}

TEST(ChannelView, ControlBlockWithWrongMagicOrSizesIsRejected) {
  auto layout = ChannelLayout::compute(16, 16, 4096);
  ASSERT_TRUE(layout.ok());
  auto region = SharedRegion::create("malv-test", layout->total_bytes);
  ASSERT_TRUE(region.ok());
  auto view = ChannelView::over(*region, *layout);
  ASSERT_TRUE(view.ok());
  EXPECT_FALSE(check_control_block(*view, *layout).ok());  // never initialised
  initialize_control_block(*view, *layout);
  EXPECT_TRUE(check_control_block(*view, *layout).ok());
  auto other = ChannelLayout::compute(16, 32, 4096);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(check_control_block(*view, *other).ok());
}

}  // namespace
}  // namespace malv::ipc
