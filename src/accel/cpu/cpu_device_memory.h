// CpuDeviceMemory: "device" memory for the CPU backend, with accounting.
//
// Each allocation is its own 64-byte aligned block of host memory (cache-line
// aligned, like a GPU allocator's alignment); its DevicePtr is the address.
// The pool counts requested bytes against a fixed capacity, so a CPU backend
// runs out of memory the way a GPU does instead of paging the host to death.
//
// Invariant: a block handed out holds only zeros. Memory one VM frees is
// reused for another, and without clearing the next owner would read the
// previous one's data back. Clearing is done where it is cheapest:
//
//  * Blocks of kMappedMin bytes and more are their own anonymous mappings.
//    A fresh mapping is zero (the kernel fills pages on first touch). A
//    freed one is kept, up to a bound, in a cache by size class and cleared
//    when it is handed out again: pages in RAM are zeroed with memset, the
//    others (never touched, or swapped out) are dropped with MADV_DONTNEED,
//    so the next touch maps a zero page. A block its owner never wrote is
//    cleared by one mincore call, and a reused one is not faulted in again.
//  * Smaller blocks come from the C heap and are zeroed with memset when
//    handed out (they are small, so that is cheap).
//
// `clear` = false turns all of this off (every block from the C heap, not
// cleared): it exists only so that `malv bench alloc` can measure what
// clearing costs, and must never be used where more than one guest shares
// the backend.
//
//   CpuDeviceMemory memory(1 << 30);
//   Result<DevicePtr> ptr = memory.allocate(4096);  // kResourceExhausted past capacity
//   memory.free(*ptr);
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "accel/kernel_registry.h"
#include "malv/result.h"

namespace malv::accel::cpu {

class CpuDeviceMemory {
 public:
  explicit CpuDeviceMemory(std::uint64_t capacity, bool clear = true);
  ~CpuDeviceMemory();
  CpuDeviceMemory(const CpuDeviceMemory&) = delete;
  CpuDeviceMemory& operator=(const CpuDeviceMemory&) = delete;

  // A zero-byte allocation is valid and distinct, and counts as zero bytes.
  // The block holds zeros (unless clearing was turned off).
  [[nodiscard]] Result<DevicePtr> allocate(std::size_t bytes);
  // Unknown pointers are ignored with a warning (a double free is a caller bug).
  void free(DevicePtr ptr);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t in_use() const;

  // Blocks at least this large (after rounding) are their own mappings.
  static constexpr std::size_t kMappedMin = std::size_t{64} << 10;

 private:
  struct Block {
    std::size_t bytes = 0;   // requested, counted against the capacity
    std::size_t mapped = 0;  // length of its own mapping; 0: from the C heap
  };

  // Hands out a heap block of `rounded` bytes, zeroed when clearing.
  void* allocate_heap(std::size_t rounded) const;

  const std::uint64_t capacity_;
  const bool clear_;
  const std::size_t cache_limit_;  // bytes of freed mappings kept for reuse
  mutable std::mutex mu_;
  std::uint64_t in_use_ = 0;                              // guarded by mu_
  std::unordered_map<std::uint64_t, Block> allocations_;  // guarded by mu_
  // Freed mappings by length; each is cleared when handed out again.
  std::unordered_map<std::size_t, std::vector<void*>> cache_;  // guarded by mu_
  std::size_t cached_bytes_ = 0;                               // guarded by mu_
  std::size_t mappings_ = 0;  // live and cached mappings; guarded by mu_
};

// A quarter of physical RAM: the default capacity.
std::uint64_t default_cpu_device_memory();

}  // namespace malv::accel::cpu
