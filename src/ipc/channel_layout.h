// ChannelLayout: what lives where in a channel's memfd, and typed views of it.
//
//   offset 0              ControlBlock (one page): magic, version, sizes,
//                         the SQ and CQ ring headers
//   sq_offset             sq_entries  x wire::Command    (64 B each)
//   cq_offset             cq_entries  x wire::Completion (32 B each)
//   arena_offset          arena_bytes of data the commands point into
//   total_bytes           (every section starts on a 4 KiB boundary)
//
// The host computes the layout, creates the region, and initialises the
// control block once. The guest learns sq_entries, cq_entries, arena_offset,
// arena_bytes and the region size from the HelloReply; it recomputes the
// layout itself and ChannelView::over() refuses a layout that does not match
// the recomputation or does not fit the region, so a wrong reply cannot make
// either side address memory outside the mapping.
//
//   MALV_ASSIGN_OR_RETURN(auto layout, ChannelLayout::compute(256, 512, 64 << 20));
//   MALV_ASSIGN_OR_RETURN(auto region, SharedRegion::create("malv-vm1", layout.total_bytes));
//   MALV_ASSIGN_OR_RETURN(auto view, ChannelView::over(region, layout));
//   initialize_control_block(view, layout);
//   RingConsumer<wire::Command> sq(view.sq_header, view.sq_slots, layout.sq_entries);
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ipc/shared_region.h"
#include "ipc/spsc_ring.h"
#include "malv/protocol.h"
#include "malv/result.h"

namespace malv::ipc {

inline constexpr std::uint32_t kControlBlockMagic = 0x424C434Du;  // "MCLB"
inline constexpr std::uint32_t kControlBlockVersion = 1;
inline constexpr std::uint64_t kChannelPageBytes = 4096;
inline constexpr std::uint32_t kMaxRingEntries = 1u << 16;
inline constexpr std::uint64_t kMinArenaBytes = 4096;
inline constexpr std::uint64_t kMaxArenaBytes = 1ull << 30;

struct ChannelLayout {
  std::uint32_t sq_entries = 0, cq_entries = 0;  // powers of two
  std::uint64_t sq_offset = 0, cq_offset = 0, arena_offset = 0, arena_bytes = 0, total_bytes = 0;

  // Validates sizes (powers of two, 1 <= entries <= kMaxRingEntries,
  // kMinArenaBytes <= arena <= kMaxArenaBytes; kInvalidArgument otherwise)
  // and places each section on a 4 KiB boundary. The arena keeps exactly
  // arena_bytes; total_bytes is rounded up to a whole page.
  [[nodiscard]] static Result<ChannelLayout> compute(std::uint32_t sq_entries,
                                                     std::uint32_t cq_entries,
                                                     std::uint64_t arena_bytes);

  friend bool operator==(const ChannelLayout&, const ChannelLayout&) = default;
};

// At offset 0 of the memfd, one page. Written by the host once; afterwards
// only the ring headers change. The guest reads the sizes only to check
// them against what it was told, never to size its own accesses.
struct ControlBlock {
  std::uint32_t magic;    // kControlBlockMagic
  std::uint32_t version;  // kControlBlockVersion
  std::uint32_t sq_entries;
  std::uint32_t cq_entries;
  std::uint64_t sq_offset;
  std::uint64_t cq_offset;
  std::uint64_t arena_offset;
  std::uint64_t arena_bytes;
  std::uint64_t total_bytes;
  RingHeader sq;  // submission ring header (guest produces)
  RingHeader cq;  // completion ring header (host produces)
};
static_assert(std::is_standard_layout_v<ControlBlock>);
static_assert(sizeof(ControlBlock) <= kChannelPageBytes);

// Views over a mapped region; both sides use this.
struct ChannelView {
  ControlBlock* control = nullptr;
  RingHeader* sq_header = nullptr;
  wire::Command* sq_slots = nullptr;
  RingHeader* cq_header = nullptr;
  wire::Completion* cq_slots = nullptr;
  std::byte* arena = nullptr;
  std::uint64_t arena_bytes = 0;

  // kInvalidArgument when the layout is not what compute() gives for its
  // sizes, or when it does not fit in the region.
  [[nodiscard]] static Result<ChannelView> over(const SharedRegion& region,
                                                const ChannelLayout& layout);
  // The same over part of a mapping (one session's slot of a VM's ivshmem
  // region, ipc/ivshmem_layout.h).
  [[nodiscard]] static Result<ChannelView> over(std::span<std::byte> memory,
                                                const ChannelLayout& layout);
};

// Host side, once, before the fd is sent: writes magic, version and sizes,
// and resets both ring headers to empty.
void initialize_control_block(const ChannelView& view, const ChannelLayout& layout);

// Guest side: checks magic, version and that the sizes recorded in the
// control block equal `layout` (kInvalidArgument / kUnimplemented otherwise).
[[nodiscard]] Status check_control_block(const ChannelView& view, const ChannelLayout& layout);

}  // namespace malv::ipc
