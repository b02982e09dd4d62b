// HostConfig: what `malv serve` reads from its TOML file (--config) and
// flags. Flags given on the command line override the file.
//
//   [host]
//   socket = "/run/malv/malv.sock"        # guests connect here
//   admin_socket = "/run/malv/admin.sock"  # HTTP+JSON admin API
//   tcp = "127.0.0.1:7070"                 # optional
//   backend = "cpu"                        # cpu | cuda | auto
//   memory_mib = 4096                      # device memory: CPU backend size, GPU cap
//   policy_dir = "/usr/lib/malv/policies"  # MLaaS modules loaded at start
//   checkpoint_dir = "/var/lib/malv/ckpt"  # guests' checkpoints, a directory per VM
//   data_dirs = ["/usr/share/datasets"]    # what guests' data pipelines may read
//   state_dir = "/var/lib/malv/state"      # what the admin API changed, kept across restarts
//   shutdown_grace_ms = 2000               # queued device work may finish, then is cancelled
//   spill_link_gbps = 12.0                 # CPU backend: spill/fill copies paced to this link
//   memory_trace_dir = "/var/lib/malv/traces"  # oversubscribed VMs' access traces
//   memory_prefetch = true                 # bring spilled buffers back ahead of their use
//   memory_lending = true                  # oversubscribed VMs borrow unused device memory
//   cpu_control = true                     # VMs' CPU shares by their cpu_sched policies
//   cpu_interval_ms = 50                   # how often those policies decide
//   cpu_mechanism = "auto"                 # auto | cgroup-v2 | cgroup-v1 | thread-fallback
//   cpu_allowed_pid_uids = [64055]         # owners of processes a VM's cpu_pid may name
//   host_cpus = "3"                        # cores the host's own threads run on (all if unset)
//   hello_timeout_ms = 5000                # a guest's whole hello must arrive in this
//   max_pending_per_peer = 8               # connections before their hello, per peer
//   max_pending = 64                       # ... and in all
//   ivshmem_slots = 4                      # sessions at once per VM served over ivshmem
//   ivshmem_arena_mib = 16                 # ... and each one's arena
//   gpu_host_policy = "priority"           # the scheduler's host level: which VM runs
//                                          # next (priority | fair-share | fifo)
//   aten_denied = ["aten::cumsum"]         # PyTorch operators guests may not run (name
//                                          # substrings, beyond the built-in refusals)
//
//   [[vm]]
//   name = "train-a"
//   token = "secret-a"
//   memory_mib = 1024                      # device memory held at once (resident)
//   virtual_memory_mib = 4096              # allocated in all; the excess spills to host memory
//   weight = 2.0
//   priority = "batch"                     # latency | batch
//   max_streams = 16
//   gpu_policy = "fair-share"
//   vsock_cid = 3                          # over AF_VSOCK this CID is the VM
//   max_sessions = 32                      # sessions open at once
//   host_memory_mib = 1024                 # arenas + checkpoint snapshots in host RAM
//   checkpoint_mib = 4096                  # checkpoint files on disk, together
//   max_checkpoints = 256                  # checkpoints kept
//   cpu_weight_limit = 1000                # highest CPU weight its cpu_sched policy may give
//   cpu_pid = 4242                         # a process working for it (a hypervisor's);
//                                          # its owner must be in [cpu] allowed_pid_uids
//   ivshmem = true                         # its QEMU attaches an ivshmem-doorbell device to
//                                          # <socket's directory>/<name>.ivshmem (docs/vms.md)
//   ivshmem_socket = "/run/malv/a.ivshmem" # ... or to this socket
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ipc/channel_layout.h"
#include "malv/result.h"
#include "vgpu/host_sched_policy.h"
#include "vgpu/vm_registry.h"

namespace malv::host {

struct HostConfig {
  std::string socket;
  std::string admin_socket;
  std::string tcp;  // HOST:PORT, empty = off
  std::uint32_t vsock_port = 0;
  std::string backend = "auto";
  std::uint64_t memory_mib = 0;
  unsigned workers = 0;
  std::uint64_t arena_mib = 64;
  std::string policy_dir;
  std::string checkpoint_dir;  // empty: <default_runtime_dir()>/checkpoints
  std::string state_dir;       // empty: <default_runtime_dir()>/state
  // The vGPU scheduler's host level (vgpu/host_sched_policy.h); the admin
  // may change it (PUT /scheduler), and that is kept in state_dir.
  vgpu::HostSchedPolicy gpu_host_policy = vgpu::HostSchedPolicy::kPriority;
  std::uint64_t shutdown_grace_ms = 2000;
  // The CPU backend's spill and fill copies are paced to this link bandwidth
  // (GB/s per direction; 0: unpaced), a model of PCIe (vgpu/memory_manager.h).
  double spill_link_gbps = 12.0;
  // When set, each oversubscribed VM's access trace goes to <dir>/<vm>.trace.
  std::string memory_trace_dir;
  // Oversubscribed VMs' spilled buffers come back ahead of their use,
  // overlapping the batch that runs (vgpu/memory_manager.h).
  bool memory_prefetch = true;
  // Oversubscribed VMs hold more than their quota while the device has room,
  // given back when a VM within its guarantee needs it (vgpu/device_memory_ledger.h).
  bool memory_lending = true;
  // Per-VM CPU control (cpu_control/): a VM whose cpu_sched policy is not
  // builtin/none gets a control group, its weight decided every interval.
  bool cpu_control = true;
  std::uint64_t cpu_interval_ms = 50;
  // How VMs' CPU shares are held: "auto" (the best that works: cgroup v2,
  // v1, else per-thread nice and affinity), "cgroup-v2", "cgroup-v1" or
  // "thread-fallback" (cpu_control/mechanism.h).
  std::string cpu_mechanism = "auto";
  // A VM's cpu_pid must be a process owned by one of these users (a
  // hypervisor's); empty: no VM may name a process.
  std::vector<std::uint32_t> cpu_allowed_pid_uids;
  // The cores the host's own threads (the backend's workers, the sessions'
  // dispatchers, the data pipelines) run on, as the kernel lists them
  // ("3", "2-3"); empty: every core it was started with. VMs keep every
  // core (docs/cpu-control.md, "The host's own cores").
  std::string host_cpus;
  std::vector<std::string> data_dirs;  // empty: kDefaultDataDirs
  // PyTorch operators (the torch device) the admin denies: substrings of
  // their schema names (accel::AtenPluginOptions::denied).
  std::vector<std::string> aten_denied;
  // Pre-authentication bounds (microlake::ServerOptions).
  std::uint64_t hello_timeout_ms = 5000;
  std::uint32_t max_pending_per_peer = 8;
  std::uint32_t max_pending = 64;
  std::vector<vgpu::VmConfig> vms;
  // VMs served to their QEMU over ivshmem (microlake/ivshmem_server.h):
  // name -> socket path ("": <directory of `socket`>/<name>.ivshmem).
  std::map<std::string, std::string> ivshmem_sockets;
  // Each such VM's region: sessions at once, and each one's arena.
  std::uint32_t ivshmem_slots = 4;
  std::uint64_t ivshmem_arena_mib = 16;
};

// Where the host's data pipeline looks up datasets unless configured:
// Debian's dataset packages install under /usr/share/datasets.
inline constexpr const char* kDefaultDataDir = "/usr/share/datasets";

// Bounds of the host's numbers, whether from flags or the config file.
inline constexpr std::uint64_t kMaxMemoryMib = 1ull << 24;  // 16 TiB; MiB << 20 stays in 64 bits
inline constexpr std::uint64_t kMaxWorkers = 4096;
inline constexpr std::uint64_t kMaxArenaMib = ipc::kMaxArenaBytes >> 20;

// Parses a TOML file; errors name the file, line and key.
[[nodiscard]] Result<HostConfig> load_host_config(const std::string& path);

// The merged configuration (file, then flags) before anything starts: a bad
// value is kInvalidArgument naming the key, its flag and the accepted range.
[[nodiscard]] Status check_host_config(const HostConfig& config);

// host_cpus' cores: a CPU list naming at least one core, every one of them
// among those this process may run on now (kInvalidArgument naming them).
[[nodiscard]] Result<std::vector<int>> host_cpu_list(const std::string& text);

// $XDG_RUNTIME_DIR/malv, else /run/malv (root) or /tmp/malv-<uid>; created.
std::string default_runtime_dir();

}  // namespace malv::host
