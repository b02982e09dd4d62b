#include "vgpu/device_memory_ledger.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "vgpu/memory_manager.h"

namespace malv::vgpu {

DeviceMemoryLedger::DeviceMemoryLedger(std::uint64_t capacity)
    : capacity_(capacity),
      pool_(std::make_shared<ByteQuota>("the device memory no quota guarantees", capacity)) {}

void DeviceMemoryLedger::set_guaranteed(std::uint64_t bytes) {
  guaranteed_.store(bytes, std::memory_order_relaxed);
  // A limit of 0 means unlimited to a ByteQuota: with everything
  // guaranteed, the pool keeps one byte (no real allocation fits in it).
  if (capacity_ != 0) pool_->set_limit(bytes < capacity_ ? capacity_ - bytes : 1);
}

void DeviceMemoryLedger::add_borrower(MemoryManager* manager) {
  std::lock_guard lock(mutex_);
  borrowers_.push_back(manager);
}

void DeviceMemoryLedger::remove_borrower(MemoryManager* manager) {
  std::lock_guard lock(mutex_);
  borrowers_.erase(std::remove(borrowers_.begin(), borrowers_.end(), manager), borrowers_.end());
}

Result<accel::DevicePtr> DeviceMemoryLedger::allocate(accel::Backend& device, std::size_t bytes,
                                                      const MemoryManager* except) {
  Result<accel::DevicePtr> ptr = device.allocate(bytes);
  if (ptr.ok() || ptr.error().code() != ErrorCode::kResourceExhausted || borrowed_bytes() == 0) {
    return ptr;
  }
  reclaiming_.fetch_add(1, std::memory_order_acq_rel);
  const auto deadline = std::chrono::steady_clock::now() + kReclaimPatience;
  for (;;) {
    // What the device lacks (all of it if the capacity is unknown).
    const std::uint64_t in_use = device.memory_in_use();
    const std::uint64_t room = capacity_ > in_use ? capacity_ - in_use : 0;
    const std::uint64_t wanted = capacity_ == 0 || room >= bytes ? bytes : bytes - room;
    std::uint64_t freed = 0;
    {
      std::lock_guard lock(mutex_);  // borrowers cannot go while they are asked
      for (MemoryManager* borrower : borrowers_) {
        if (freed >= wanted) break;
        if (borrower != except) freed += borrower->give_back(wanted - freed);
      }
    }
    reclaimed_.fetch_add(freed, std::memory_order_relaxed);
    ptr = device.allocate(bytes);
    if (ptr.ok() || ptr.error().code() != ErrorCode::kResourceExhausted || borrowed_bytes() == 0 ||
        std::chrono::steady_clock::now() >= deadline) {
      break;
    }
    // What is left is pinned by work in flight or its manager is busy.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  reclaiming_.fetch_sub(1, std::memory_order_acq_rel);
  return ptr;
}

}  // namespace malv::vgpu
