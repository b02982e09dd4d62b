// CudaAllocations: the CUDA backend's ledger of device memory, and the
// generation tag in every DevicePtr it hands out.
//
// The ledger counts requested bytes against the backend's capacity, as the
// CPU backend does, so allocate() fails with kResourceExhausted at the same
// point whatever else shares the GPU. It does no driver calls itself.
//
// Generation tags: a device reset (cuda_context.h) frees every allocation,
// and the driver will hand the same addresses out again. A DevicePtr keeps
// the context generation it was made in in its top 8 bits (generation 0,
// the first, leaves the address as it is), so an op or a free() that names
// memory from before a reset is recognised and refused with kDeviceReset
// instead of touching someone else's new buffer.
//
//   DevicePtr ptr = tag(address, generation);
//   if (generation_of(ptr) != current) return kDeviceReset;
//   cuMemsetD8Async(address_of(ptr) + offset, ...);
#pragma once

#include <cuda.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "accel/kernel_registry.h"
#include "malv/result.h"

namespace malv::accel::cuda {

inline constexpr int kGenerationShift = 56;
inline constexpr std::uint64_t kAddressMask = (std::uint64_t{1} << kGenerationShift) - 1;
inline constexpr std::uint32_t kMaxGenerations = 1u << (64 - kGenerationShift);

inline DevicePtr tag(CUdeviceptr address, std::uint32_t generation) {
  return DevicePtr{static_cast<std::uint64_t>(address) |
                   (static_cast<std::uint64_t>(generation) << kGenerationShift)};
}
inline std::uint32_t generation_of(DevicePtr ptr) {
  return static_cast<std::uint32_t>(ptr.value >> kGenerationShift);
}
inline CUdeviceptr address_of(DevicePtr ptr) {
  return static_cast<CUdeviceptr>(ptr.value & kAddressMask);
}

class CudaAllocations {
 public:
  explicit CudaAllocations(std::uint64_t capacity) : capacity_(capacity) {}

  // Sets `bytes` aside for an allocation about to be made, or fails with
  // kResourceExhausted naming requested, used and capacity.
  [[nodiscard]] Status reserve(std::uint64_t bytes);
  // The allocation was made (commit) or not (cancel).
  void commit(DevicePtr ptr, std::uint64_t bytes);
  void cancel(std::uint64_t bytes);
  // Forgets an allocation; its size, or nothing if the ledger never had it.
  std::optional<std::uint64_t> release(DevicePtr ptr);
  // After a device reset: every allocation is gone.
  void drop_all();
  // At shutdown: every allocation still held, now forgotten.
  std::vector<DevicePtr> take_all();

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t in_use() const;

 private:
  const std::uint64_t capacity_;
  mutable std::mutex mu_;
  std::uint64_t in_use_ = 0;                                      // guarded by mu_
  std::unordered_map<std::uint64_t, std::uint64_t> allocations_;  // guarded by mu_
};

}  // namespace malv::accel::cuda
