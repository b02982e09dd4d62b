// The C-level view of a `malv` device tensor's bytes that the package's
// other extension uses: `malv._torch._buffer_view(tensor)` returns a capsule
// named kDeviceBufferCapsule holding a DeviceBufferView, and the host
// services of malv._malv (HostDataset, checkpoints) name that range of the
// VM's buffer in their commands, so a batch lands in a device tensor and a
// device tensor is saved by the host without its bytes crossing to the
// guest.
//
// The view is valid while the tensor lives (the capsule holds it) and only
// on the connection it was made on: `connection` is compared with the
// caller's before anything is sent.
#pragma once

#include <cstdint>

namespace malv::guest {
class Buffer;
class Connection;
}  // namespace malv::guest

namespace malv::python {

inline constexpr const char* kDeviceBufferCapsule = "malv._torch.DeviceBufferView";
inline constexpr std::uint32_t kDeviceBufferViewVersion = 1;

struct DeviceBufferView {
  std::uint32_t version = kDeviceBufferViewVersion;
  const guest::Connection* connection = nullptr;  // the session the buffer belongs to
  const guest::Buffer* buffer = nullptr;
  std::uint64_t offset = 0;  // of the tensor's first byte in the buffer
  std::uint64_t bytes = 0;   // of the tensor (contiguous)
};

}  // namespace malv::python
