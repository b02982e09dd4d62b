#include "ipc/channel_layout.h"

#include <fmt/format.h>

#include <new>

namespace malv::ipc {

namespace {

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Inputs are bounded (entries <= 2^16, arena <= 1 GiB) before any sum is
// formed, so none of the uint64 arithmetic below can overflow.
std::uint64_t round_up_page(std::uint64_t v) {
  return (v + kChannelPageBytes - 1) & ~(kChannelPageBytes - 1);
}

Status check_entries(const char* which, std::uint32_t entries) {
  if (!is_power_of_two(entries) || entries > kMaxRingEntries) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} entries must be a power of two in [1, {}], got {}", which,
                             kMaxRingEntries, entries));
  }
  return ok_status();
}

}  // namespace

Result<ChannelLayout> ChannelLayout::compute(std::uint32_t sq_entries, std::uint32_t cq_entries,
                                             std::uint64_t arena_bytes) {
  MALV_TRY(check_entries("submission ring", sq_entries));
  MALV_TRY(check_entries("completion ring", cq_entries));
  if (arena_bytes < kMinArenaBytes || arena_bytes > kMaxArenaBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("arena must be {} to {} bytes, got {}", kMinArenaBytes, kMaxArenaBytes,
                             arena_bytes));
  }
  ChannelLayout layout;
  layout.sq_entries = sq_entries;
  layout.cq_entries = cq_entries;
  layout.sq_offset = kChannelPageBytes;
  layout.cq_offset =
      layout.sq_offset + round_up_page(std::uint64_t{sq_entries} * sizeof(wire::Command));
  layout.arena_offset =
      layout.cq_offset + round_up_page(std::uint64_t{cq_entries} * sizeof(wire::Completion));
  layout.arena_bytes = arena_bytes;
  layout.total_bytes = layout.arena_offset + round_up_page(arena_bytes);
  return layout;
}

Result<ChannelView> ChannelView::over(const SharedRegion& region, const ChannelLayout& layout) {
  if (!region.valid()) return Error(ErrorCode::kInvalidArgument, "channel region is not mapped");
  return over(std::span(region.data(), region.size()), layout);
}

Result<ChannelView> ChannelView::over(std::span<std::byte> memory, const ChannelLayout& layout) {
  // Recompute rather than trust offsets that may come from the peer.
  MALV_ASSIGN_OR_RETURN(
      ChannelLayout expected,
      ChannelLayout::compute(layout.sq_entries, layout.cq_entries, layout.arena_bytes));
  if (!(expected == layout)) {
    return Error(ErrorCode::kInvalidArgument, "channel layout does not match its sizes");
  }
  if (memory.data() == nullptr || memory.size() < layout.total_bytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("channel layout needs {} bytes, region has {}", layout.total_bytes,
                             memory.size()));
  }
  std::byte* base = memory.data();
  ChannelView view;
  view.control = reinterpret_cast<ControlBlock*>(base);
  view.sq_header = &view.control->sq;
  view.cq_header = &view.control->cq;
  view.sq_slots = reinterpret_cast<wire::Command*>(base + layout.sq_offset);
  view.cq_slots = reinterpret_cast<wire::Completion*>(base + layout.cq_offset);
  view.arena = base + layout.arena_offset;
  view.arena_bytes = layout.arena_bytes;
  return view;
}

void initialize_control_block(const ChannelView& view, const ChannelLayout& layout) {
  auto* cb = new (view.control) ControlBlock{};
  cb->magic = kControlBlockMagic;
  cb->version = kControlBlockVersion;
  cb->sq_entries = layout.sq_entries;
  cb->cq_entries = layout.cq_entries;
  cb->sq_offset = layout.sq_offset;
  cb->cq_offset = layout.cq_offset;
  cb->arena_offset = layout.arena_offset;
  cb->arena_bytes = layout.arena_bytes;
  cb->total_bytes = layout.total_bytes;
  initialize_ring_header(&cb->sq);
  initialize_ring_header(&cb->cq);
}

Status check_control_block(const ChannelView& view, const ChannelLayout& layout) {
  const ControlBlock& cb = *view.control;
  if (cb.magic != kControlBlockMagic) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("bad control block magic {:#x}", cb.magic));
  }
  if (cb.version != kControlBlockVersion) {
    return Error(ErrorCode::kUnimplemented, fmt::format("control block version {} (we speak {})",
                                                        cb.version, kControlBlockVersion));
  }
  if (cb.sq_entries != layout.sq_entries || cb.cq_entries != layout.cq_entries ||
      cb.sq_offset != layout.sq_offset || cb.cq_offset != layout.cq_offset ||
      cb.arena_offset != layout.arena_offset || cb.arena_bytes != layout.arena_bytes ||
      cb.total_bytes != layout.total_bytes) {
    return Error(ErrorCode::kInvalidArgument, "control block sizes differ from the handshake");
  }
  return ok_status();
}

}  // namespace malv::ipc
