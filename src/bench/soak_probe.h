// What `malv bench soak` reads from the host it started: whether the
// process is still alive, its RSS, and its accounting through the admin API
// (GET /metrics for the per-VM and device memory gauges, GET /vms for each
// VM's streams and sessions).
//
//   MALV_ASSIGN_OR_RETURN(MetricsSample m, read_metrics(admin));
//   if (std::string why = host.exit_reason(); !why.empty()) { /* it died */ }
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "harness/admin_client.h"
#include "harness/host_process.h"
#include "malv/result.h"

namespace malv::bench {

// VmRSS of a process, in bytes (0 if it cannot be read).
std::uint64_t rss_bytes(pid_t pid);

struct MetricsSample {
  std::map<std::string, std::uint64_t> vm_memory;  // malv_vm_memory_bytes by VM
  std::uint64_t device_memory = 0;                 // malv_device_memory_bytes
};

// kFailedPrecondition if the host has no malv_device_memory_bytes.
[[nodiscard]] Result<MetricsSample> read_metrics(const harness::AdminClient& admin);

struct VmState {
  std::uint64_t memory_used = 0;          // resident (the memory quota's usage)
  std::uint64_t virtual_memory_used = 0;  // allocated in all
  std::uint64_t bytes_moved = 0;          // the memory manager's spills and fills
  std::uint64_t faults = 0;
  std::uint64_t streams = 0;
  std::uint64_t sessions = 0;
  std::uint64_t queue_depth = 0;
};

[[nodiscard]] Result<std::map<std::string, VmState>> read_vms(const harness::AdminClient& admin);

}  // namespace malv::bench
