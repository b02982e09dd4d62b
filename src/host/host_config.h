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
//   hello_timeout_ms = 5000                # a guest's whole hello must arrive in this
//   max_pending_per_peer = 8               # connections before their hello, per peer
//   max_pending = 64                       # ... and in all
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
#pragma once

#include <string>
#include <vector>

#include "ipc/channel_layout.h"
#include "malv/result.h"
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
  std::vector<std::string> data_dirs;  // empty: kDefaultDataDirs
  // Pre-authentication bounds (microlake::ServerOptions).
  std::uint64_t hello_timeout_ms = 5000;
  std::uint32_t max_pending_per_peer = 8;
  std::uint32_t max_pending = 64;
  std::vector<vgpu::VmConfig> vms;
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

// $XDG_RUNTIME_DIR/malv, else /run/malv (root) or /tmp/malv-<uid>; created.
std::string default_runtime_dir();

}  // namespace malv::host
