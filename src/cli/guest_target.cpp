#include "cli/guest_target.h"

#include <fmt/format.h>

#include <cstdlib>

#include "cli/host_config.h"
#include "cli/option_checks.h"
#include "malv/policy_selection.h"
#include "nn/native_device.h"
#include "nn/remote_device.h"

namespace malv::cli {

void add_target_options(CLI::App& sub, TargetFlags& flags, const std::string& group_title) {
  auto* where = sub.add_option_group("host", group_title);
  where->add_option("--socket", flags.socket, "Connect to a host on this Unix socket");
  where->add_option("--tcp", flags.tcp, "Connect to a host over TCP, HOST:PORT")
      ->check(host_port(/*allow_port_zero=*/false));
  where->add_flag("--native", flags.native,
                  "Run in this process on a CPU backend, without a host (the baseline)");
  where->require_option(0, 1);
  sub.add_option("--vm", flags.vm, "VM name to connect as")->capture_default_str();
  sub.add_option("--token", flags.token, "The VM's token, if the host requires one");
  sub.add_option("--policy", flags.policies,
                 "Select this VM's MLaaS policy, class=policy (e.g. gpu_sched=fair-share); "
                 "repeatable; the host's admin decides what is allowed")
      ->type_name("CLASS=NAME");
}

Result<GuestTarget> open_target(const TargetFlags& flags) {
  GuestTarget target;
  if (flags.native) {
    if (!flags.policies.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "--policy selects a host's MLaaS policies; it needs a host, not --native");
    }
    MALV_ASSIGN_OR_RETURN(target.device, nn::NativeDevice::create_cpu({}));
    return target;
  }
  const guest::ConnectOptions options{.vm_name = flags.vm, .credential = flags.token};
  if (!flags.tcp.empty()) {
    MALV_ASSIGN_OR_RETURN(HostPort where, parse_host_port(flags.tcp, /*allow_port_zero=*/false));
    MALV_ASSIGN_OR_RETURN(target.connection,
                          guest::Connection::connect_tcp(where.host, where.port, options));
  } else {
    const std::string path =
        flags.socket.empty() ? default_runtime_dir() + "/malv.sock" : flags.socket;
    auto connection = guest::Connection::connect_unix(path, options);
    if (!connection.ok()) {
      return std::move(connection)
          .error()
          .with_context(fmt::format(
              "connecting to the host at {} (is `malv serve` running? or use --native)", path));
    }
    target.connection = std::move(connection).value();
  }
  for (const std::string& selection : flags.policies) {
    MALV_TRY(guest::select_policy(*target.connection, selection));
    fmt::print(stderr, "policy {} selected for VM {}\n", selection, flags.vm);
  }
  MALV_ASSIGN_OR_RETURN(target.device, nn::RemoteDevice::create(*target.connection));
  return target;
}

}  // namespace malv::cli
