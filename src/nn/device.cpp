#include "nn/device.h"

#include <fmt/format.h>

namespace malv::nn {

void DeviceBuffer::reset() {
  if (device_ != nullptr) {
    std::exchange(device_, nullptr)->release_slot(slot_);
    bytes_ = 0;
  }
}

Result<DeviceBuffer> Device::allocate(std::uint64_t bytes) {
  MALV_ASSIGN_OR_RETURN(std::uint32_t slot, allocate_slot(bytes));
  return DeviceBuffer(this, slot, bytes);
}

Status Device::check_range(const DeviceBuffer& buffer, std::uint64_t offset, std::uint64_t bytes,
                           std::string_view what) const {
  if (buffer.device() != this) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{}: buffer does not belong to this device", what));
  }
  if (offset > buffer.size() || bytes > buffer.size() - offset) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("{}: {} bytes at offset {} do not fit a {}-byte buffer", what, bytes,
                             offset, buffer.size()));
  }
  return ok_status();
}

}  // namespace malv::nn
