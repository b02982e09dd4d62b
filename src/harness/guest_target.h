// GuestTarget: where a guest command runs its model — a host's vGPU reached
// as a VM (Unix socket, TCP, vsock, or from inside a VM its ivshmem
// device), or an in-process CPU backend (--native). With none of them
// given, a guest inside a VM with an ivshmem device uses that device, any
// other the host's default Unix socket.
//
// `malv guest train` and `malv guest infer` share these options (cli adds
// them as --socket/--tcp/--native, --vm, --token and --policy) and the code
// that opens the connection, so both fail the same way when no host is there.
//
//   TargetOptions target{.socket = "/run/malv/malv.sock", .vm = "train-a"};
//   MALV_ASSIGN_OR_RETURN(GuestTarget target, open_target(target));
//   use(*target.device);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "malv/connection.h"
#include "malv/result.h"
#include "nn/device.h"

namespace malv::harness {

struct TargetOptions {
  std::string socket;
  std::string tcp;    // HOST:PORT
  std::string vsock;  // CID:PORT
  // A VM's ivshmem device (Connection::connect_ivshmem): "" the first one.
  bool ivshmem = false;
  std::string ivshmem_device;
  std::string vm = "guest";
  std::string token;
  bool native = false;
  std::vector<std::string> policies;  // "class=policy", selected through the protocol
};

// The connection (if remote) and the device on it, in destruction order.
struct GuestTarget {
  std::unique_ptr<guest::Connection> connection;
  std::unique_ptr<nn::Device> device;
};

// Connects as the VM (or creates the native backend), selects the VM's
// --policy choices on the host, and opens a device.
[[nodiscard]] Result<GuestTarget> open_target(const TargetOptions& options);

}  // namespace malv::harness
