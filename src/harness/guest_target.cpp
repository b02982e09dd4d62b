#include "harness/guest_target.h"

#include <fmt/format.h>

#include <cstdlib>

#include "base/text_parse.h"
#include "host/host_config.h"
#include "malv/policy_selection.h"
#include "nn/native_device.h"
#include "nn/remote_device.h"

namespace malv::harness {

Result<GuestTarget> open_target(const TargetOptions& options) {
  GuestTarget target;
  if (options.native) {
    if (!options.policies.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "--policy selects a host's MLaaS policies; it needs a host, not --native");
    }
    MALV_ASSIGN_OR_RETURN(target.device, nn::NativeDevice::create_cpu({}));
    return target;
  }
  const guest::ConnectOptions connect{.vm_name = options.vm, .credential = options.token};
  const bool ivshmem =
      options.ivshmem || (options.tcp.empty() && options.vsock.empty() && options.socket.empty() &&
                          guest::ivshmem_device_present());
  if (ivshmem) {
    auto connection = guest::Connection::connect_ivshmem(options.ivshmem_device, connect);
    if (!connection.ok()) {
      return std::move(connection)
          .error()
          .with_context(fmt::format(
              "connecting to the host through the ivshmem device {}",
              options.ivshmem_device.empty() ? "(the first one)" : options.ivshmem_device));
    }
    target.connection = std::move(connection).value();
  } else if (!options.vsock.empty()) {
    MALV_ASSIGN_OR_RETURN(VsockAddress where, parse_vsock_address(options.vsock));
    MALV_ASSIGN_OR_RETURN(target.connection,
                          guest::Connection::connect_vsock(where.cid, where.port, connect));
  } else if (!options.tcp.empty()) {
    MALV_ASSIGN_OR_RETURN(HostPort where, parse_host_port(options.tcp, /*allow_port_zero=*/false));
    MALV_ASSIGN_OR_RETURN(target.connection,
                          guest::Connection::connect_tcp(where.host, where.port, connect));
  } else {
    const std::string path =
        options.socket.empty() ? host::default_runtime_dir() + "/malv.sock" : options.socket;
    auto connection = guest::Connection::connect_unix(path, connect);
    if (!connection.ok()) {
      return std::move(connection)
          .error()
          .with_context(fmt::format(
              "connecting to the host at {} (is `malv serve` running? or use --native)", path));
    }
    target.connection = std::move(connection).value();
  }
  for (const std::string& selection : options.policies) {
    MALV_TRY(guest::select_policy(*target.connection, selection));
    fmt::print(stderr, "policy {} selected for VM {}\n", selection, options.vm);
  }
  MALV_ASSIGN_OR_RETURN(target.device, nn::RemoteDevice::create(*target.connection));
  return target;
}

}  // namespace malv::harness
