// DeviceMemoryLedger: the accelerator's memory as the VMs share it.
//
// Three rules (docs/operations.md, "Device memory across VMs"):
//  - Guarantees. A VM's resident quota (VmConfig::memory_limit) is memory it
//    can always have: admission refuses a quota that does not fit beside the
//    others' (VmRegistry checks capacity() against the sum).
//  - The pool. VMs without a quota share what the quotas leave: pool() is a
//    ByteQuota of capacity - sum of quotas that their allocations reserve.
//  - Lending. Memory a VM is not using (inside its quota or in the pool) may
//    be lent: an oversubscribed VM's memory manager places buffers above its
//    quota while the device has room for them. What it holds above its quota
//    is borrowed, and is taken back when anyone within their guarantee (or
//    the pool) needs the room: allocate() asks the borrowers to evict borrowed
//    buffers, chosen by their own memory policies.
//
//   DeviceMemoryLedger ledger(device.info().total_memory);
//   registry.set_ledger(&ledger);   // admission, the pool
//   vm.memory().attach(device, &policies, options, &ledger);  // lending
//   ...
//   MALV_ASSIGN_OR_RETURN(accel::DevicePtr p, ledger.allocate(device, n, nullptr));
//
// Thread-safety: every method may be called from any thread. allocate() never
// waits for a borrower's lock (it skips one that is busy), so it may be
// called with a memory manager's lock held.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "accel/backend.h"
#include "base/byte_quota.h"

namespace malv::vgpu {

class MemoryManager;

class DeviceMemoryLedger {
 public:
  static constexpr std::chrono::milliseconds kReclaimPatience{500};

  // capacity 0: unknown (no admission check, the pool unlimited).
  explicit DeviceMemoryLedger(std::uint64_t capacity);

  std::uint64_t capacity() const { return capacity_; }
  // The sum of the VMs' resident quotas (the registry keeps it current).
  void set_guaranteed(std::uint64_t bytes);
  std::uint64_t guaranteed() const { return guaranteed_.load(std::memory_order_relaxed); }
  // What VMs without a quota allocate from (limit: capacity - guaranteed).
  const std::shared_ptr<ByteQuota>& pool() const { return pool_; }

  // Memory managers that may borrow, and what they hold borrowed now.
  void add_borrower(MemoryManager* manager);
  void remove_borrower(MemoryManager* manager);
  void borrowed(std::uint64_t bytes) { borrowed_.fetch_add(bytes, std::memory_order_relaxed); }
  void returned(std::uint64_t bytes) { borrowed_.fetch_sub(bytes, std::memory_order_relaxed); }
  std::uint64_t borrowed_bytes() const { return borrowed_.load(std::memory_order_relaxed); }

  // device.allocate(bytes) for memory someone is guaranteed (a VM within its
  // quota, or the pool): if the device has no room and something is
  // borrowed, borrowers other than `except` evict borrowed buffers until the
  // allocation succeeds, nothing is borrowed any more, or kReclaimPatience
  // has passed (what is left is pinned by work in flight, or its manager is
  // busy: both end within a batch). No one borrows while this runs, so what
  // is given back cannot be borrowed again before the owner has it.
  [[nodiscard]] Result<accel::DevicePtr> allocate(accel::Backend& device, std::size_t bytes,
                                                  const MemoryManager* except);
  // Whether a borrower may take more now (no reclaim is running).
  bool lending_open() const { return reclaiming_.load(std::memory_order_acquire) == 0; }
  std::uint64_t reclaimed_bytes() const { return reclaimed_.load(std::memory_order_relaxed); }

 private:
  const std::uint64_t capacity_;
  std::atomic<std::uint64_t> guaranteed_{0};
  std::shared_ptr<ByteQuota> pool_;
  std::atomic<std::uint64_t> borrowed_{0};
  std::atomic<std::uint64_t> reclaimed_{0};
  std::atomic<int> reclaiming_{0};
  std::mutex mutex_;
  std::vector<MemoryManager*> borrowers_;  // guarded by mutex_
};

}  // namespace malv::vgpu
