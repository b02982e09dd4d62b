#include "ipc/ivshmem_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>

namespace malv::ipc {

Result<IvshmemLayout> IvshmemLayout::compute(std::uint32_t slot_count, std::uint32_t sq_entries,
                                             std::uint32_t cq_entries, std::uint64_t arena_bytes) {
  if (slot_count < 1 || slot_count > kIvshmemMaxSlots) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("ivshmem slots must be 1 to {}, got {}",
                                                          kIvshmemMaxSlots, slot_count));
  }
  IvshmemLayout layout;
  MALV_ASSIGN_OR_RETURN(layout.channel,
                        ChannelLayout::compute(sq_entries, cq_entries, arena_bytes));
  layout.slot_count = slot_count;
  layout.slot_bytes = layout.channel.total_bytes;  // a whole number of pages
  layout.slots_offset = kIvshmemHeaderBytes;
  // Bounded: 32 slots of at most ~1.01 GiB each.
  const std::uint64_t used = layout.slots_offset + slot_count * layout.slot_bytes;
  layout.total_bytes = 1;
  while (layout.total_bytes < used) layout.total_bytes <<= 1;
  return layout;
}

void initialize_ivshmem_header(std::span<std::byte> region, const IvshmemLayout& layout,
                               std::string_view vm_name, std::uint32_t host_peer_id) {
  auto* header = new (region.data()) IvshmemHeader{};
  header->magic = kIvshmemMagic;
  header->version = kIvshmemVersion;
  header->slot_count = layout.slot_count;
  header->host_peer_id = host_peer_id;
  header->sq_entries = layout.channel.sq_entries;
  header->cq_entries = layout.channel.cq_entries;
  header->arena_bytes = layout.channel.arena_bytes;
  header->slot_bytes = layout.slot_bytes;
  header->slots_offset = layout.slots_offset;
  header->total_bytes = layout.total_bytes;
  const std::size_t n = std::min(vm_name.size(), sizeof(header->vm_name) - 1);
  std::memcpy(header->vm_name, vm_name.data(), n);
  header->host_heartbeat.store(1, std::memory_order_relaxed);
  for (SlotControl& slot : header->slots) {
    slot.state.store(static_cast<std::uint32_t>(SlotState::kFree), std::memory_order_relaxed);
    slot.heartbeat.store(0, std::memory_order_relaxed);
  }
  // Ordered before any peer's first look by the system call that hands the
  // region over (QEMU's set-up message).
}

Result<IvshmemLayout> read_ivshmem_header(std::span<const std::byte> region) {
  if (region.size() < kIvshmemHeaderBytes) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("ivshmem region of {} bytes has no room for its header", region.size()));
  }
  // A copy of the fixed fields, which nobody writes after the host made
  // them (the slots' words change under us: they are not copied).
  struct Fixed {
    std::uint32_t magic, version, slot_count, host_peer_id, sq_entries, cq_entries;
    std::uint64_t arena_bytes, slot_bytes, slots_offset, total_bytes;
  } header;
  static_assert(sizeof(Fixed) == offsetof(IvshmemHeader, vm_name));
  std::memcpy(&header, region.data(), sizeof(header));
  if (header.magic != kIvshmemMagic) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("ivshmem region has magic {:#x}, not MaLV-OS's {:#x} (is the host "
                             "serving this VM?)",
                             header.magic, kIvshmemMagic));
  }
  if (header.version != kIvshmemVersion) {
    return Error(ErrorCode::kUnimplemented, fmt::format("ivshmem layout version {} (we speak {})",
                                                        header.version, kIvshmemVersion));
  }
  MALV_ASSIGN_OR_RETURN(IvshmemLayout layout,
                        IvshmemLayout::compute(header.slot_count, header.sq_entries,
                                               header.cq_entries, header.arena_bytes));
  if (layout.slot_bytes != header.slot_bytes || layout.slots_offset != header.slots_offset ||
      layout.total_bytes != header.total_bytes) {
    return Error(ErrorCode::kInvalidArgument, "ivshmem header sizes do not match its layout");
  }
  if (layout.total_bytes > region.size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("ivshmem layout needs {} bytes, the region has {}", layout.total_bytes,
                             region.size()));
  }
  return layout;
}

}  // namespace malv::ipc
