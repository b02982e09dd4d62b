// CpuDeviceMemory: "device" memory for the CPU backend, with accounting.
//
// Each allocation is its own 64-byte aligned block of host memory (cache-line
// aligned, like a GPU allocator's alignment); its DevicePtr is the address.
// The pool counts requested bytes against a fixed capacity, so a CPU backend
// runs out of memory the way a GPU does instead of paging the host to death.
//
//   CpuDeviceMemory memory(1 << 30);
//   Result<DevicePtr> ptr = memory.allocate(4096);  // kResourceExhausted past capacity
//   memory.free(*ptr);
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "accel/kernel_registry.h"
#include "base/result.h"

namespace malv::accel::cpu {

class CpuDeviceMemory {
 public:
  explicit CpuDeviceMemory(std::uint64_t capacity) : capacity_(capacity) {}
  ~CpuDeviceMemory();
  CpuDeviceMemory(const CpuDeviceMemory&) = delete;
  CpuDeviceMemory& operator=(const CpuDeviceMemory&) = delete;

  // A zero-byte allocation is valid and distinct, and counts as zero bytes.
  [[nodiscard]] Result<DevicePtr> allocate(std::size_t bytes);
  // Unknown pointers are ignored with a warning (a double free is a caller bug).
  void free(DevicePtr ptr);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t in_use() const;

 private:
  const std::uint64_t capacity_;
  mutable std::mutex mu_;
  std::uint64_t in_use_ = 0;                                    // guarded by mu_
  std::unordered_map<std::uint64_t, std::size_t> allocations_;  // guarded by mu_
};

// A quarter of physical RAM: the default capacity.
std::uint64_t default_cpu_device_memory();

}  // namespace malv::accel::cpu
