// `malv serve`: the host daemon. Reads a TOML config (--config) and flags,
// starts the HostDaemon, prints one "ready" line on stdout when guests can
// connect, and shuts down cleanly on SIGINT or SIGTERM.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/option_checks.h"
#include "host/host_config.h"
#include "host/serve_until_signal.h"

namespace malv::cli {
namespace {

struct ServeFlags {
  std::string config_path;
  host::HostConfig overrides;
  bool open = false;
  bool no_memory_prefetch = false;
  bool no_memory_lending = false;
  bool no_cpu_control = false;
  std::string gpu_host_policy;  // --gpu-host-policy
};

int serve(const ServeFlags& flags, const CLI::App& sub) {
  host::HostConfig config;
  if (!flags.config_path.empty()) {
    Result<host::HostConfig> loaded = host::load_host_config(flags.config_path);
    if (!loaded.ok()) {
      fmt::print(stderr, "malv serve: {}\n", loaded.error().to_string());
      return 2;
    }
    config = std::move(loaded).value();
  }
  const host::HostConfig& o = flags.overrides;
  if (sub.count("--socket")) config.socket = o.socket;
  if (sub.count("--admin-socket")) config.admin_socket = o.admin_socket;
  if (sub.count("--tcp")) config.tcp = o.tcp;
  if (sub.count("--vsock-port")) config.vsock_port = o.vsock_port;
  if (sub.count("--backend")) config.backend = o.backend;
  if (sub.count("--memory-mib")) config.memory_mib = o.memory_mib;
  if (sub.count("--workers")) config.workers = o.workers;
  if (sub.count("--arena-mib")) config.arena_mib = o.arena_mib;
  if (sub.count("--policy-dir")) config.policy_dir = o.policy_dir;
  if (sub.count("--checkpoint-dir")) config.checkpoint_dir = o.checkpoint_dir;
  if (sub.count("--state-dir")) config.state_dir = o.state_dir;
  if (sub.count("--shutdown-grace-ms")) config.shutdown_grace_ms = o.shutdown_grace_ms;
  if (sub.count("--data-dir")) config.data_dirs = o.data_dirs;
  if (sub.count("--spill-link-gbps")) config.spill_link_gbps = o.spill_link_gbps;
  if (sub.count("--memory-trace-dir")) config.memory_trace_dir = o.memory_trace_dir;
  if (flags.no_memory_prefetch) config.memory_prefetch = false;
  if (flags.no_memory_lending) config.memory_lending = false;
  if (flags.no_cpu_control) config.cpu_control = false;
  if (sub.count("--cpu-interval-ms")) config.cpu_interval_ms = o.cpu_interval_ms;
  if (sub.count("--cpu-mechanism")) config.cpu_mechanism = o.cpu_mechanism;
  if (sub.count("--host-cpus")) config.host_cpus = o.host_cpus;
  if (sub.count("--hello-timeout-ms")) config.hello_timeout_ms = o.hello_timeout_ms;
  if (sub.count("--max-pending-per-peer")) config.max_pending_per_peer = o.max_pending_per_peer;
  if (sub.count("--max-pending")) config.max_pending = o.max_pending;
  if (sub.count("--gpu-host-policy")) {
    config.gpu_host_policy = *vgpu::parse_host_sched_policy(flags.gpu_host_policy);
  }

  if (Status checked = host::check_host_config(config); !checked.ok()) {
    fmt::print(stderr, "malv serve: {}\n", checked.error().message());
    return 2;
  }
  host::DaemonOptions options;
  options.config = std::move(config);
  options.open_admission = flags.open;
  Status served = host::serve_until_signal(std::move(options), [](host::HostDaemon& d) {
    const accel::DeviceInfo info = d.backend().info();
    fmt::print("ready socket={} admin={} tcp_port={} backend={} device=\"{}\"\n",
               d.server().unix_path(), d.admin_path(), d.server().tcp_port(), info.backend,
               info.name);
    std::fflush(stdout);
  });
  if (!served.ok()) {
    fmt::print(stderr, "malv serve: {}\n", served.error().to_string());
    return 1;
  }
  return 0;
}

}  // namespace

void register_serve(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* sub = app.add_subcommand(
      "serve", "Run the host daemon: Micro-LAKE core, vGPU service, MLaaS, admin API");
  host::HostConfig& o = flags->overrides;
  sub->add_option("--config", flags->config_path,
                  "TOML configuration file (see docs/operations.md)")
      ->check(CLI::ExistingFile);
  sub->add_option("--socket", o.socket,
                  "Unix socket for guests (default $XDG_RUNTIME_DIR/malv/malv.sock)");
  sub->add_option("--admin-socket", o.admin_socket,
                  "Unix socket of the HTTP admin API (default: admin.sock beside --socket)");
  sub->add_option("--tcp", o.tcp, "Also accept guests on TCP HOST:PORT (port 0: any free port)")
      ->check(host_port(/*allow_port_zero=*/true));
  sub->add_option("--vsock-port", o.vsock_port, "Also accept guests on this AF_VSOCK port");
  sub->add_option("--backend", o.backend, "Accelerator backend: cpu, cuda or auto")
      ->capture_default_str();
  sub->add_option(
         "--memory-mib", o.memory_mib,
         "Device memory the host hands out, in MiB: the CPU backend's size, a cap on a GPU "
         "(default: a quarter of RAM on the CPU, the GPU's memory on CUDA)")
      ->check(whole_number_in(0, host::kMaxMemoryMib));
  sub->add_option("--workers", o.workers, "CPU backend worker threads (default: cores)")
      ->check(whole_number_in(0, host::kMaxWorkers));
  sub->add_option("--arena-mib", o.arena_mib, "Data arena per session, MiB")
      ->capture_default_str()
      ->check(whole_number_in(1, host::kMaxArenaMib));
  sub->add_option("--policy-dir", o.policy_dir, "Directory of MLaaS modules to load at start");
  sub->add_option("--checkpoint-dir", o.checkpoint_dir,
                  "Where guests' checkpoints are kept, a directory per VM (default: "
                  "$XDG_RUNTIME_DIR/malv/checkpoints; use persistent storage in production)");
  sub->add_option("--state-dir", o.state_dir,
                  "Where what the admin API changed is kept across restarts (default: a 'state' "
                  "directory beside the guest socket; see docs/operations.md)");
  sub->add_option("--gpu-host-policy", flags->gpu_host_policy,
                  "The vGPU scheduler's host level, which VM runs next: priority (latency VMs "
                  "first, then weighted fair share), fair-share or fifo (default: priority; the "
                  "admin may change it: malv policy host)")
      ->check(CLI::IsMember({"priority", "fair-share", "fifo"}));
  sub->add_option("--shutdown-grace-ms", o.shutdown_grace_ms,
                  "At shutdown, queued device work may finish for this long, then is cancelled")
      ->capture_default_str()
      ->check(whole_number_in(0, 600000));
  sub->add_option("--data-dir", o.data_dirs,
                  "Directory the guests' data pipelines may read datasets from; repeatable "
                  "(default: /usr/share/datasets)")
      ->type_name("DIR");
  sub->add_option("--spill-link-gbps", o.spill_link_gbps,
                  "CPU backend: pace the memory manager's spill and fill copies to this link "
                  "bandwidth in GB/s, a model of PCIe (0: unpaced)")
      ->capture_default_str()
      ->check(finite_in(0, 1e6));
  sub->add_option("--memory-trace-dir", o.memory_trace_dir,
                  "Write each oversubscribed VM's memory access trace to DIR/<vm>.trace "
                  "(for `malv memory replay`)")
      ->type_name("DIR");
  sub->add_flag("--no-memory-prefetch", flags->no_memory_prefetch,
                "Oversubscribed VMs: fill spilled buffers only when an op needs them, instead of "
                "ahead of their use while the batch before runs");
  sub->add_flag("--no-memory-lending", flags->no_memory_lending,
                "Oversubscribed VMs hold at most their resident quota, even while the device "
                "has room (no lending)");
  sub->add_flag("--no-cpu-control", flags->no_cpu_control,
                "Leave the VMs' CPU shares alone whatever cpu_sched policy they select (no "
                "control groups)");
  sub->add_option("--cpu-interval-ms", o.cpu_interval_ms,
                  "How often the VMs' cpu_sched policies decide their CPU shares")
      ->capture_default_str()
      ->check(whole_number_in(1, 60000));
  sub->add_option("--cpu-mechanism", o.cpu_mechanism,
                  "How VMs' CPU shares are held: auto (the best that works), cgroup-v2, cgroup-v1 "
                  "or thread-fallback (per-thread nice values and affinity)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cgroup-v2", "cgroup-v1", "thread-fallback"}));
  sub->add_option("--host-cpus", o.host_cpus,
                  "Cores the host's own threads (accelerator workers, session dispatchers, data "
                  "pipelines) run on, as the kernel lists them (3, 2-3, 0,2); VMs keep every core. "
                  "Default: all (docs/cpu-control.md)");
  sub->add_option("--hello-timeout-ms", o.hello_timeout_ms,
                  "A guest's whole hello must arrive within this many ms")
      ->capture_default_str()
      ->check(whole_number_in(1, 600000));
  sub->add_option("--max-pending-per-peer", o.max_pending_per_peer,
                  "Connections that have not finished their hello, per peer (uid, IP address "
                  "or vsock CID); more are closed at once")
      ->capture_default_str()
      ->check(whole_number_in(1, 65536));
  sub->add_option("--max-pending", o.max_pending,
                  "Connections that have not finished their hello, in all")
      ->capture_default_str()
      ->check(whole_number_in(1, 65536));
  sub->add_flag("--open", flags->open,
                "Admit any VM name without a token (development and benchmarks only)");
  sub->callback([flags, sub, &exit_code] { exit_code = serve(*flags, *sub); });
}

}  // namespace malv::cli
