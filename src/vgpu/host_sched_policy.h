// HostSchedPolicy: the host level of the two-level vGPU scheduler, which
// decides which VM the device serves next. A VM's own gpu_sched policy (an
// MLaaS module it selects) only orders that VM's work; the host level is
// the admin's, per device, so no VM's choice can take device time from
// another VM.
//
//   priority    (the default) latency-class VMs first, their work on the
//               device's highest priority and its latency lane; batch VMs
//               share the rest by weight, by measured busy time that ages
//               (see below)
//   fair-share  every VM by weight, by aged measured busy time; the class
//               changes nothing
//   fifo        the VM whose next item is oldest: what a device without a
//               scheduler does (the baseline the benchmarks compare with)
//
// Aging: the busy time fair sharing compares decays with a half-life
// (SchedulerOptions::share_half_life_ns), so a VM that was idle for a while
// neither owes for its past nor banks credit for it. With the starvation
// bound (no VM with ready work waits longer than starvation_bound_ns, under
// every host policy) batch work is never starved by latency work.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace malv::vgpu {

enum class HostSchedPolicy { kPriority, kFairShare, kFifo };

inline constexpr std::array<HostSchedPolicy, 3> kHostSchedPolicies = {
    HostSchedPolicy::kPriority, HostSchedPolicy::kFairShare, HostSchedPolicy::kFifo};

constexpr std::string_view host_sched_policy_name(HostSchedPolicy policy) {
  switch (policy) {
    case HostSchedPolicy::kPriority: return "priority";
    case HostSchedPolicy::kFairShare: return "fair-share";
    case HostSchedPolicy::kFifo: return "fifo";
  }
  return "priority";
}

constexpr std::optional<HostSchedPolicy> parse_host_sched_policy(std::string_view name) {
  for (HostSchedPolicy policy : kHostSchedPolicies) {
    if (host_sched_policy_name(policy) == name) return policy;
  }
  return std::nullopt;
}

}  // namespace malv::vgpu
