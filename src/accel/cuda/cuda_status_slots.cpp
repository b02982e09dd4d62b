#include "accel/cuda/cuda_status_slots.h"

#include "accel/cuda/cuda_errors.h"

namespace malv::accel::cuda {

Result<StatusSlot> StatusSlots::take() {
  std::lock_guard lock(mu_);
  if (free_.empty()) {
    void* chunk = nullptr;
    CUresult r = cuMemHostAlloc(&chunk, kChunkBytes, CU_MEMHOSTALLOC_DEVICEMAP);
    if (r != CUDA_SUCCESS) return cu_error(r, "cuMemHostAlloc(status words)");
    CUdeviceptr device = 0;
    r = cuMemHostGetDevicePointer(&device, chunk, 0);
    if (r != CUDA_SUCCESS) {
      (void)cuMemFreeHost(chunk);
      return cu_error(r, "cuMemHostGetDevicePointer(status words)");
    }
    chunks_.push_back(chunk);
    auto* words = static_cast<volatile std::int32_t*>(chunk);
    for (std::size_t i = 0; i < kChunkBytes / sizeof(std::int32_t); ++i) {
      free_.push_back(StatusSlot{words + i, device + i * sizeof(std::int32_t)});
    }
  }
  StatusSlot slot = free_.back();
  free_.pop_back();
  *slot.host = 0;  // seen by the device: the launch that uses it is queued after this store
  return slot;
}

void StatusSlots::give_back(StatusSlot slot) {
  std::lock_guard lock(mu_);
  free_.push_back(slot);
}

void StatusSlots::forget_all() {
  std::lock_guard lock(mu_);
  chunks_.clear();
  free_.clear();
}

void StatusSlots::free_all() {
  std::lock_guard lock(mu_);
  for (void* chunk : chunks_) (void)cuMemFreeHost(chunk);
  chunks_.clear();
  free_.clear();
}

}  // namespace malv::accel::cuda
