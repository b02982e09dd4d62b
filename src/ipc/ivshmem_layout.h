// IvshmemLayout: how one VM's ivshmem region (BAR 2 of QEMU's
// ivshmem-doorbell device, a memfd on the host) is carved into session
// slots, so that every session a VM opens uses the same rings as a process
// guest's channel.
//
//   offset 0               IvshmemHeader: magic, version, the slot count,
//                          each slot's channel sizes, the host's ivshmem
//                          peer id, and one SlotControl per slot
//   slots_offset + i*slot_bytes
//                          slot i: a channel laid out exactly as a process
//                          guest's memfd (ipc/channel_layout.h): control
//                          block, submission ring, completion ring, arena
//   total_bytes            a power of two (a PCI BAR's size is one)
//
// A slot's life (SlotControl::state; docs/protocol.md, section 8a):
//
//   kFree --guest CAS--> kClaimed --guest--> kHello --host--> kActive
//                                                    \--host--> kRefused
//   kActive --guest--> kClosing;  kRefused --guest--> kFree
//   any --host, once the session is torn down--> kReclaiming --> kFree
//
// A guest claims a free slot with a compare-and-swap (several processes in
// one VM share the region), writes a wire::HelloRequest into it, sets
// kHello and rings doorbell vector kIvshmemControlVector. The host answers
// with a wire::HelloReply and kActive (or kRefused with the reason). While
// the session lives the guest bumps `heartbeat` (at least every
// kIvshmemHeartbeatPeriod); a slot whose heartbeat stops for
// kIvshmemHeartbeatTimeout is reclaimed by the host (a guest process that
// died, a guest that rebooted). The host never trusts what it reads here:
// it keeps its own record of which slots run sessions, reads `state` only
// as a request, and copies the hello out before checking it. The host
// bumps `host_heartbeat` the same way, and frees every slot when it stops
// serving the region, so a guest learns that its session ended.
//
// Doorbells: vector kIvshmemControlVector asks the host to look at the
// slot table; vector 1 + i is slot i's submission doorbell (the guest rings
// it instead of a futex wake, which cannot cross the VM boundary).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "ipc/channel_layout.h"
#include "malv/protocol.h"
#include "malv/result.h"

namespace malv::ipc {

inline constexpr std::uint32_t kIvshmemMagic = 0x5356494Du;  // "MIVS"
inline constexpr std::uint32_t kIvshmemVersion = 1;
inline constexpr std::uint32_t kIvshmemMaxSlots = 32;
inline constexpr std::uint32_t kIvshmemControlVector = 0;
inline constexpr std::uint64_t kIvshmemHeaderBytes = 16 * 1024;
inline constexpr std::chrono::milliseconds kIvshmemHeartbeatPeriod{200};
inline constexpr std::chrono::milliseconds kIvshmemHeartbeatTimeout{3000};

// QEMU's ivshmem PCI ids and register layout (BAR 0, docs/specs/ivshmem-spec
// in QEMU): writing (peer << 16) | vector to the doorbell register signals
// that vector of that peer.
inline constexpr std::uint16_t kIvshmemPciVendor = 0x1af4;
inline constexpr std::uint16_t kIvshmemPciDevice = 0x1110;
inline constexpr std::size_t kIvshmemRegIvPosition = 8;
inline constexpr std::size_t kIvshmemRegDoorbell = 12;

enum class SlotState : std::uint32_t {
  kFree = 0,
  kClaimed = 1,
  kHello = 2,
  kActive = 3,
  kRefused = 4,
  kClosing = 5,
  kReclaiming = 6,  // the host is discarding the slot's memory; kFree next
};

struct SlotControl {
  std::atomic<std::uint32_t> state;      // SlotState
  std::uint32_t guest_pid;               // the guest process in the VM (for logs)
  std::atomic<std::uint64_t> heartbeat;  // bumped by the guest while it uses the slot
  wire::HelloRequest hello;              // guest, before kHello
  wire::HelloReply reply;                // host, before kActive / kRefused
  std::uint8_t reserved[16];
};
static_assert(sizeof(SlotControl) == 384);
static_assert(std::is_standard_layout_v<SlotControl>);

struct IvshmemHeader {
  std::uint32_t magic;    // kIvshmemMagic
  std::uint32_t version;  // kIvshmemVersion
  std::uint32_t slot_count;
  std::uint32_t host_peer_id;  // the ivshmem peer the doorbells go to
  std::uint32_t sq_entries;
  std::uint32_t cq_entries;
  std::uint64_t arena_bytes;
  std::uint64_t slot_bytes;
  std::uint64_t slots_offset;
  std::uint64_t total_bytes;
  char vm_name[wire::kNameBytes];  // the VM this region belongs to
  // Bumped by the host while it serves the region (every scan, ~100 ms): a
  // guest whose host stopped or died sees it stand still and gives up
  // (kIvshmemHeartbeatTimeout) instead of polling for ever.
  std::atomic<std::uint64_t> host_heartbeat;
  std::uint8_t reserved[256 - 64 - wire::kNameBytes];
  SlotControl slots[kIvshmemMaxSlots];
};
static_assert(sizeof(IvshmemHeader) <= kIvshmemHeaderBytes);
static_assert(std::is_standard_layout_v<IvshmemHeader>);

struct IvshmemLayout {
  std::uint32_t slot_count = 0;
  ChannelLayout channel;  // every slot's
  std::uint64_t slot_bytes = 0, slots_offset = 0, total_bytes = 0;

  // 1 <= slot_count <= kIvshmemMaxSlots and the channel sizes as
  // ChannelLayout::compute checks them; kInvalidArgument otherwise.
  [[nodiscard]] static Result<IvshmemLayout> compute(std::uint32_t slot_count,
                                                     std::uint32_t sq_entries,
                                                     std::uint32_t cq_entries,
                                                     std::uint64_t arena_bytes);
  std::uint64_t slot_offset(std::uint32_t slot) const { return slots_offset + slot * slot_bytes; }
  // Slot i's channel memory inside `region` (which must hold total_bytes).
  std::span<std::byte> slot_memory(std::span<std::byte> region, std::uint32_t slot) const {
    return region.subspan(slot_offset(slot), slot_bytes);
  }

  friend bool operator==(const IvshmemLayout&, const IvshmemLayout&) = default;
};

// Host side, once per region before QEMU gets it: the header, every slot
// kFree.
void initialize_ivshmem_header(std::span<std::byte> region, const IvshmemLayout& layout,
                               std::string_view vm_name, std::uint32_t host_peer_id);

// Guest side: checks the header (magic, version, sizes that recompute to
// the same layout and fit the region it was read from) and returns the
// layout; kInvalidArgument / kUnimplemented with the reason otherwise.
[[nodiscard]] Result<IvshmemLayout> read_ivshmem_header(std::span<const std::byte> region);

inline IvshmemHeader& ivshmem_header(std::span<std::byte> region) {
  return *reinterpret_cast<IvshmemHeader*>(region.data());
}

}  // namespace malv::ipc
