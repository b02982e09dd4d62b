// How CpuGroups carries out per-VM CPU control on this host, best first:
// a cgroup v2 cpu controller, cgroup v1's cpu (+cpuacct, cpuset)
// hierarchies, or, where the host can write neither, per-thread nice values
// and affinity masks. See docs/cpu-control.md.
#pragma once

#include <string_view>

namespace malv::cpu_control {

enum class Mechanism { kCgroupV2, kCgroupV1, kThreadFallback };

// "cgroup-v2", "cgroup-v1", "thread-fallback".
std::string_view mechanism_name(Mechanism mechanism);

}  // namespace malv::cpu_control
