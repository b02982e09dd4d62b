#include "accel/cpu/cpu_device_memory.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "base/log.h"

namespace malv::accel::cpu {
namespace {
constexpr std::size_t kAlignment = 64;
}  // namespace

CpuDeviceMemory::~CpuDeviceMemory() {
  // Whatever the owner leaked goes with the device, as on a GPU context teardown.
  for (auto& [address, bytes] : allocations_) {
    std::free(reinterpret_cast<void*>(static_cast<std::uintptr_t>(address)));
  }
}

Result<DevicePtr> CpuDeviceMemory::allocate(std::size_t bytes) {
  std::lock_guard lock(mu_);
  if (bytes > capacity_ - in_use_) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("cpu device memory: requested {} bytes, {} of {} in use", bytes,
                             in_use_, capacity_));
  }
  // Round up to the alignment (aligned_alloc requires a multiple of it); a
  // zero-byte request still gets a block so its pointer is unique.
  const std::size_t rounded =
      (std::max<std::size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* block = std::aligned_alloc(kAlignment, rounded);
  if (block == nullptr) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("cpu device memory: host allocation of {} bytes failed", bytes));
  }
  const auto address = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(block));
  allocations_.emplace(address, bytes);
  in_use_ += bytes;
  return DevicePtr{address};
}

void CpuDeviceMemory::free(DevicePtr ptr) {
  std::lock_guard lock(mu_);
  auto it = allocations_.find(ptr.value);
  if (it == allocations_.end()) {
    log::warn("accel", "cpu device memory: free of unknown pointer {:#x} ignored", ptr.value);
    return;
  }
  in_use_ -= it->second;
  std::free(reinterpret_cast<void*>(static_cast<std::uintptr_t>(ptr.value)));
  allocations_.erase(it);
}

std::uint64_t CpuDeviceMemory::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

std::uint64_t default_cpu_device_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return std::uint64_t{1} << 30;  // unknown: 1 GiB
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size) / 4;
}

}  // namespace malv::accel::cpu
