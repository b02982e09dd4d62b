// MemoryManager: one VM's device memory when the VM may allocate more than
// it may hold at once. Virtual device memory, made resident on demand by the
// host, with eviction chosen by the VM's MLaaS memory policy.
//
// A VM whose virtual limit is above its resident quota (VmConfig) gets
// virtual DevicePtrs from allocate(): bit 63 set, the buffer's id in bits
// 40-62 and an offset in bits 0-39, so a session adds offsets to them as to
// a device address. No device memory backs a buffer until an op touches it.
// When the scheduler dispatches a batch, place() makes every buffer the
// batch's ops touch resident (filling spilled ones back from host memory,
// evicting others), pins them until the batch ends (unpin()), and rewrites
// the ops' pointers to device addresses. So queued work never holds a device
// address that could go stale, and no guest ever sees one.
//
// Victims are resident buffers no op in flight and no op being placed uses,
// ranked by the VM's memory policy (MemoryPolicies; LRU without one), which
// is told how far ahead in the VM's queued work each candidate is next used.
// A dirty victim (written since its host copy was made) is copied out; a
// clean one is dropped: its host copy is current, or it was never written
// and holds zeros, which a fresh device allocation gives back.
//
// A fill an op waits for (a fault) and the spills that make room for it are
// copies made on the dispatching thread (Backend::copy_to_host_now /
// copy_to_device_now). With prefetch on, the manager's prefetch thread
// works while the batch just placed runs: after each placement it brings in
// the spilled buffers that the VM's queued work uses next, nearest first,
// evicting for them only buffers whose next use is further away (never one
// the running batch pins), so that the copies overlap compute. A buffer is
// "moving" while such a copy runs outside the lock; a placement or free that
// needs it waits for the copy to finish. With link_bytes_per_s set, copies
// are paced to that bandwidth, one link per direction shared by both
// threads: a model of the PCIe link for the CPU backend, whose "device"
// memory is host RAM (docs/operations.md).
//
//   vm.memory().attach(device, &policies, {.link_bytes_per_s = 12e9});
//   MALV_ASSIGN_OR_RETURN(accel::DevicePtr p, vm.memory().allocate(64 << 20));
//   vm.memory().place(batch, status, pins, next_uses);  // scheduler, at dispatch
//   vm.memory().unpin(pins);                            // when the batch ends
//
// Thread-safe: one mutex per VM, held across a placement and its copies
// (not across the prefetch thread's copies).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "accel/backend.h"
#include "base/byte_quota.h"
#include "malv/mlaas.h"
#include "malv/result.h"
#include "vgpu/access_trace.h"
#include "vgpu/device_memory_ledger.h"
#include "vgpu/memory_policies.h"

namespace malv::vgpu {

struct MemoryOptions {
  // Spill and fill copies take at least bytes / link_bytes_per_s (0: as fast
  // as the backend copies). 12e9 models a PCIe 3.0 x16 link.
  double link_bytes_per_s = 0;
  // Borrow device memory above the resident quota while the device has
  // room (the attach()'s DeviceMemoryLedger lends it and takes it back).
  bool lend = false;
  // Bring spilled buffers in ahead of their use (above). Off: every fill is
  // a fault, and what moves is exactly the replay's model (tests use that).
  bool prefetch = true;
  // When set, the VM's access trace is written to <trace_dir>/<vm>.trace
  // (vgpu/access_trace.h): every managed allocation, free, and buffer an op
  // touches, in dispatch order; `malv memory replay` reads it.
  std::string trace_dir;
};

// What the manager did for the VM, for the admin API, /metrics and stats.
struct MemoryStats {
  std::uint64_t resident_bytes = 0;  // managed buffers on the device now
  std::uint64_t borrowed_bytes = 0;  // ... of which above the resident quota, lent
  std::uint64_t spilled_bytes = 0;   // managed buffers whose data is in host memory
  std::uint64_t bytes_in = 0;        // filled back to the device
  std::uint64_t bytes_out = 0;       // copied out of dirty victims
  std::uint64_t faults = 0;          // fills an op waited for
  std::uint64_t prefetches = 0;      // fills made ahead of time (bytes_in counts them)
  std::uint64_t prefetch_hits = 0;   // uses of buffers brought in ahead of time
  std::uint64_t evictions = 0;
  std::uint64_t policy_fallbacks = 0;   // decisions the policy failed and LRU made
  std::uint64_t failed_placements = 0;  // ops whose buffers could not all be resident
  std::uint64_t bytes_reclaimed = 0;    // borrowed bytes evicted because another VM needed them
};

// A buffer's next use in the work queued on the VM's streams.
struct NextUse {
  std::uint64_t ops = 0;    // ops ahead of it on its stream
  std::int64_t est_ns = 0;  // their estimated device time
};
using NextUses = std::unordered_map<std::uint64_t, NextUse>;  // by buffer id

class MemoryManager {
 public:
  static constexpr std::uint64_t kVirtualBit = 1ull << 63;
  static constexpr int kOffsetBits = 40;  // buffers up to 1 TiB
  static bool is_virtual(accel::DevicePtr ptr) { return (ptr.value & kVirtualBit) != 0; }
  static std::uint64_t buffer_id(accel::DevicePtr ptr) {
    return (ptr.value & ~kVirtualBit) >> kOffsetBits;
  }

  // Calls fn(ptr, writes) for every device pointer the op reads or writes
  // (ptr by reference: it may be rewritten). A kernel's buffers count as
  // written: the registry does not say which arguments a kernel writes, and
  // a buffer wrongly thought clean would lose data, where one wrongly
  // thought dirty costs a copy.
  template <typename Fn>
  static void for_each_pointer(accel::Op& op, Fn&& fn) {
    if (auto* h2d = std::get_if<accel::CopyH2D>(&op)) {
      fn(h2d->dst, true);
    } else if (auto* d2h = std::get_if<accel::CopyD2H>(&op)) {
      fn(d2h->src, false);
    } else if (auto* d2d = std::get_if<accel::CopyD2D>(&op)) {
      fn(d2d->src, false);
      fn(d2d->dst, true);
    } else if (auto* memset = std::get_if<accel::Memset>(&op)) {
      fn(memset->dst, true);
    } else if (auto* launch = std::get_if<accel::Launch>(&op)) {
      for (std::uint32_t i = 0; i < launch->argc; ++i) {
        if (launch->args[i].kind == accel::ArgKind::kBuffer) fn(launch->args[i].ptr, true);
      }
    }
  }

  // `resident` is the VM's device-memory quota, `vm_name` names it to the policy.
  MemoryManager(std::string vm_name, ByteQuota& resident);
  ~MemoryManager();
  MemoryManager(const MemoryManager&) = delete;
  MemoryManager& operator=(const MemoryManager&) = delete;

  // The device and the policy source; the first call wins (every session of
  // a VM runs on the same device). policies may be null: LRU. With a ledger,
  // an op within the quota takes back what other VMs borrowed, and with
  // options.lend this VM borrows above its quota.
  void attach(accel::Backend& device, MemoryPolicies* policies, MemoryOptions options = {},
              DeviceMemoryLedger* ledger = nullptr);
  // Evicts borrowed buffers that no op pins until `bytes` are freed or none
  // is left; returns the bytes freed (0 at once if the manager is busy).
  // DeviceMemoryLedger::allocate() calls it for another VM.
  std::uint64_t give_back(std::uint64_t bytes);

  // A virtual buffer of `bytes` (the caller has charged the VM's virtual
  // limit). Holds zeros until written.
  [[nodiscard]] Result<accel::DevicePtr> allocate(std::uint64_t bytes);
  // The buffer goes, resident or not. No queued op may still use it.
  void free(accel::DevicePtr ptr);
  // Host-owned buffers the manager must not evict (accel::Backend::
  // hold_resident): the data pipeline's staged slots. A hold is refused
  // (false) when held buffers would take more than half the resident quota,
  // which must leave room for the ops' own buffers. Holds nest.
  bool hold(accel::DevicePtr ptr);
  void release_hold(accel::DevicePtr ptr);
  // Whether the VM has managed buffers (place() has work only then).
  bool active() const { return live_buffers_.load(std::memory_order_relaxed) != 0; }

  // For each op in order: makes its buffers resident and pins them,
  // appending their ids to `pins`, and rewrites its virtual pointers to
  // device addresses (status[i] = kOk); or, when they could never be
  // resident at once or a copy failed, leaves the op as it is and sets
  // status[i] (the op must not run). Returns how many ops it handled: it
  // stops before an op whose buffers do not fit beside those pinned now (by
  // ops in flight or earlier ops of `ops`), which can run once they end, and
  // before any op but the first that needs an eviction: victims are chosen
  // only when the batch's earlier ops have ended and pin nothing, so that
  // the policy chooses among every buffer the op does not use, as the
  // replay's model (vgpu/trace_replay.h) does.
  // `next_uses` is called at most once, when a victim is chosen.
  std::size_t place(std::span<accel::Op> ops, std::span<ErrorCode> status,
                    std::vector<std::uint64_t>& pins, const std::function<NextUses()>& next_uses);
  void unpin(std::span<const std::uint64_t> pins);

  MemoryStats stats() const;

 private:
  struct Buffer;
  struct Placement;

  enum class Link { kIn = 0, kOut = 1 };

  [[nodiscard]] Status make_resident(std::uint64_t id, Buffer& buffer, Placement& placement);
  // Device memory for the buffer: in the quota, else lent; within the quota
  // it takes back what others borrowed first. Both only when an op needs the
  // buffer now (not for a prefetch). kUnavailable: no room without an
  // eviction.
  [[nodiscard]] Status allocate_device(std::uint64_t id, Buffer& buffer, bool needed_now);
  // Frees the buffer's device memory and gives the bytes back to the quota
  // or the ledger.
  void release_device(Buffer& buffer);
  [[nodiscard]] Status evict(std::uint64_t id, Buffer& buffer);
  // The unpinned, unmoving resident buffer to evict (0: none), chosen by the
  // policy among those `eligible` accepts (all when it is empty).
  std::uint64_t choose_victim(Placement& placement,
                              const std::function<bool(std::uint64_t id)>& eligible = {});
  // The future as seen after the first `placed` ops of the placement: the
  // batch's remaining ops, then the streams' queues.
  NextUses future_after(Placement& placement, std::size_t placed);
  // Hands the prefetch thread the spilled buffers the future uses, nearest
  // first (replacing what it had not done yet).
  void plan_prefetch(Placement& placement, std::size_t placed);
  void prefetch_loop();
  // One step of the prefetch thread: brings in `id` (lock held on entry and
  // on return, released during copies). False: no room, the plan stops.
  bool prefetch_one(std::uint64_t id, std::unique_lock<std::mutex>& lock);
  // Waits (releasing `lock`) until none of `ids` is moving.
  void wait_not_moving(std::span<const std::uint64_t> ids, std::unique_lock<std::mutex>& lock);
  // Waits until the copy started at started_ns has taken as long as the
  // modelled link would (options_.link_bytes_per_s), after the link's
  // earlier copies in that direction.
  void pace(std::uint64_t bytes, std::int64_t started_ns, Link link) const;
  // Appends to the trace, if one is written; a failing trace is closed,
  // logged once, and the VM runs on.
  void trace(std::uint64_t id, std::uint64_t bytes, AccessKind kind, std::int64_t now_ns);

  const std::string vm_name_;
  ByteQuota& resident_;
  accel::Backend* device_ = nullptr;
  MemoryPolicies* policies_ = nullptr;
  MemoryOptions options_;
  DeviceMemoryLedger* ledger_ = nullptr;

  mutable std::mutex mutex_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Buffer>> buffers_;  // by id
  std::uint64_t next_id_ = 1;
  std::atomic<std::uint64_t> live_buffers_{0};
  std::unique_ptr<AccessTraceWriter> trace_;
  std::condition_variable moved_;  // a buffer stopped moving
  // The prefetch thread's work: (next use in ops, buffer id), nearest first,
  // and the future those distances come from.
  std::condition_variable prefetch_wanted_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> prefetch_plan_;
  NextUses prefetch_future_;
  bool stopping_ = false;
  std::thread prefetcher_;
  // When each direction of the modelled link is free again.
  mutable std::mutex link_mutex_;
  mutable std::int64_t link_free_ns_[2] = {0, 0};
  std::uint64_t held_bytes_ = 0;        // buffers with holds, each once
  std::uint64_t ops_placed_ = 0;        // the trace's op index
  std::int64_t last_use_stamp_ns_ = 0;  // the latest op's use time (strictly increasing)
  MemoryStats stats_;                   // resident_bytes and spilled_bytes are computed
};

}  // namespace malv::vgpu
