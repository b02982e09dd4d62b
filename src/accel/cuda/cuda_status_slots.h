// StatusSlots: one word per in-flight launch through which a kernel reports
// a fault only the device can find (a label out of range), so that the
// fault is the status of that launch's completion and of no other op.
//
// A slot is an int in page-locked host memory mapped into the device
// (cuMemHostAlloc with CU_MEMHOSTALLOC_DEVICEMAP): the kernel stores the
// ErrorCode into it, and once the launch's completion event has fired the
// completion thread reads it on the host, with no copy op in the stream.
// Slots come from 4 KiB chunks and are reused once read.
//
//   MALV_ASSIGN_OR_RETURN(StatusSlot slot, slots.take());  // zeroed
//   launch kernels with slot.device ...
//   after the launch's event: ErrorCode status = slot.read(); slots.give_back(slot);
//
// Thread-safe. The context must be current on the calling thread for
// take() (it may allocate) and free_all().
#pragma once

#include <cuda.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "malv/error.h"
#include "malv/result.h"

namespace malv::accel::cuda {

struct StatusSlot {
  volatile std::int32_t* host = nullptr;
  CUdeviceptr device = 0;

  ErrorCode read() const { return static_cast<ErrorCode>(*host); }
};

class StatusSlots {
 public:
  StatusSlots() = default;
  StatusSlots(const StatusSlots&) = delete;
  StatusSlots& operator=(const StatusSlots&) = delete;

  [[nodiscard]] Result<StatusSlot> take();
  void give_back(StatusSlot slot);
  // After a device reset: the chunks went with the context.
  void forget_all();
  // At shutdown.
  void free_all();

 private:
  static constexpr std::size_t kChunkBytes = 4096;

  std::mutex mu_;
  std::vector<void*> chunks_;     // guarded by mu_
  std::vector<StatusSlot> free_;  // guarded by mu_
};

}  // namespace malv::accel::cuda
