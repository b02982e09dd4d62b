// What /proc says about processes and threads: a process's threads, which
// process a thread belongs to, when it started (so a reused id is told
// apart from the thread that had it), its scheduler statistics and its
// cgroups. Every reader treats a thread that is gone as "nothing", never
// as an error: threads exit at any moment.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace malv::cpu_control {

// The threads of process `pid`, sorted (/proc/<pid>/task); empty when gone.
std::vector<pid_t> process_threads(pid_t pid);
// The process (thread group) thread `tid` belongs to; nullopt when gone.
std::optional<pid_t> process_of(pid_t tid);
// When thread `tid` started, in clock ticks since boot (/proc/<tid>/stat
// field 22); nullopt when gone. Same id and start time: same thread.
std::optional<std::uint64_t> thread_start_time(pid_t tid);
// True while process `pid` exists (zombies included).
bool process_exists(pid_t pid);

// /proc/<tid>/schedstat: time on a CPU and time spent waiting on a run
// queue, in nanoseconds, since the thread started.
struct Schedstat {
  std::int64_t run_ns = 0;
  std::int64_t wait_ns = 0;
};
std::optional<Schedstat> read_schedstat(pid_t tid);

// One line of /proc/<tid>/cgroup: "4:cpu,cpuacct:/path" or "0::/path".
struct CgroupMembership {
  int hierarchy_id = 0;
  std::vector<std::string> controllers;  // empty for cgroup v2 (and named v1 hierarchies)
  std::string path;
};
// The cgroups of thread `tid` (0: the calling process); empty when gone.
std::vector<CgroupMembership> read_cgroup_membership(pid_t tid);

}  // namespace malv::cpu_control
