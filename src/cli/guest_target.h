// GuestTarget: where a guest command runs its model — a host's vGPU reached
// as a VM (Unix socket or TCP), or an in-process CPU backend (--native).
//
// `malv guest train` and `malv guest infer` share these options and the code
// that opens the connection, so both accept the same --socket/--tcp/--native,
// --vm and --token and fail the same way when no host is there.
//
//   TargetFlags flags;
//   add_target_options(*sub, flags, "Where to train (default: the host's default socket)");
//   ...
//   MALV_ASSIGN_OR_RETURN(GuestTarget target, open_target(flags));
//   use(*target.device);
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "malv/connection.h"
#include "malv/result.h"
#include "nn/device.h"

namespace malv::cli {

struct TargetFlags {
  std::string socket;
  std::string tcp;  // HOST:PORT
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

// Adds --socket, --tcp and --native (at most one, in a group titled
// `group_title`), --vm, --token and --policy to `sub`, storing them in `flags`.
void add_target_options(CLI::App& sub, TargetFlags& flags, const std::string& group_title);

// Connects as the VM (or creates the native backend), selects the VM's
// --policy choices on the host, and opens a device.
[[nodiscard]] Result<GuestTarget> open_target(const TargetFlags& flags);

}  // namespace malv::cli
