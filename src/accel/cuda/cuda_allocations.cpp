#include "accel/cuda/cuda_allocations.h"

#include <fmt/format.h>

namespace malv::accel::cuda {

Status CudaAllocations::reserve(std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (bytes > capacity_ - in_use_) {
    return Error(ErrorCode::kResourceExhausted,
                 fmt::format("cuda device memory: requested {} bytes, {} of {} in use", bytes,
                             in_use_, capacity_));
  }
  in_use_ += bytes;
  return ok_status();
}

void CudaAllocations::commit(DevicePtr ptr, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  allocations_[ptr.value] = bytes;
}

void CudaAllocations::cancel(std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  in_use_ -= bytes;
}

std::optional<std::uint64_t> CudaAllocations::release(DevicePtr ptr) {
  std::lock_guard lock(mu_);
  auto it = allocations_.find(ptr.value);
  if (it == allocations_.end()) return std::nullopt;
  const std::uint64_t bytes = it->second;
  in_use_ -= bytes;
  allocations_.erase(it);
  return bytes;
}

void CudaAllocations::drop_all() {
  std::lock_guard lock(mu_);
  allocations_.clear();
  in_use_ = 0;
}

std::vector<DevicePtr> CudaAllocations::take_all() {
  std::lock_guard lock(mu_);
  std::vector<DevicePtr> all;
  all.reserve(allocations_.size());
  for (const auto& [value, bytes] : allocations_) all.push_back(DevicePtr{value});
  allocations_.clear();
  in_use_ = 0;
  return all;
}

std::uint64_t CudaAllocations::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

}  // namespace malv::accel::cuda
