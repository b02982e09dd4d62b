// CgroupLayout: where a host's VM groups live in the cgroup hierarchies,
// found and made by open_cgroup_v2_layout() / open_cgroup_v1_layout() and
// undone by close_cgroup_layout().
//
// The host's group is <host's own cgroup>/<group_name> in each hierarchy
// used: the host's threads stay where they are (the parent), and each VM is
// a directory below the host's group:
//
//   cgroup v1:  <root>/cpu/<host path>/malv-<pid>/<vm>        cpu.shares, tasks
//               <root>/cpuacct/<host path>/malv-<pid>/<vm>    cpuacct.usage (when separate)
//               <root>/cpuset/<host path>/malv-<pid>/<vm>     cpuset.cpus, cpuset.mems
//   cgroup v2:  <unified>/<host path>/malv-<pid>/<vm>         cpu.weight, cpuset.cpus,
//                                                             cgroup.type = threaded
//
// "host path" is the host's line in /proc/self/cgroup for that hierarchy,
// found under the mount (see locate_cgroup_dir for containers whose mount
// shows only their own subtree).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cpu_control/mechanism.h"
#include "malv/result.h"

namespace malv::cpu_control {

// One mounted hierarchy the VM groups are made in.
struct CgroupHierarchy {
  std::string label;         // "cpu", "cpu,cpuacct", "cpuacct", "cpuset", "unified"
  std::string controller;    // the controller that finds the host's line in
                             // /proc/<tid>/cgroup; empty: the cgroup v2 line ("0::")
  std::string mount;         // e.g. /sys/fs/cgroup/cpu
  std::string host_dir;      // where the host's threads live: mount + host path
  std::string group_dir;     // host_dir/<group_name>
  std::string threads_file;  // "tasks" (v1) or "cgroup.threads" (v2)

  std::string vm_dir(std::string_view vm) const;
  // The directory of thread `tid`'s cgroup in this hierarchy; nullopt when
  // the thread is gone or /proc does not name this hierarchy.
  std::optional<std::string> dir_of(pid_t tid) const;
};

struct CgroupLayout {
  Mechanism mechanism = Mechanism::kCgroupV1;
  // Every hierarchy a VM gets a directory in; [0] is the cpu controller's,
  // whose threads file lists the group's threads.
  std::vector<CgroupHierarchy> hierarchies;
  int usage_hierarchy = -1;   // cpuacct.usage (v1) / cpu.stat (v2); -1: none
  int cpuset_hierarchy = -1;  // cpuset.cpus; -1: none (affinity per thread)
  // v2: what to write into host_dir/cgroup.subtree_control on close, to
  // switch off the controllers that opening switched on ("-cpuset", "-cpu").
  std::vector<std::string> subtree_undo;
  std::string notes;  // what is missing and why, for describe()
};

struct CgroupLayoutRequest {
  std::string cgroup_root;  // e.g. /sys/fs/cgroup
  std::string group_name;   // e.g. malv-1234
};

// Finds a cgroup v2 hierarchy whose host cgroup offers the cpu controller,
// switches cpu (and cpuset when offered) on below the host's cgroup and
// makes the host's group, threaded. The error says why v2 cannot be used.
[[nodiscard]] Result<CgroupLayout> open_cgroup_v2_layout(const CgroupLayoutRequest& request);
// Finds the cgroup v1 cpu hierarchy (and cpuacct and cpuset, separate or
// co-mounted) and makes the host's group in each; cpuset gets the host
// cgroup's cpus and mems. The error says why v1 cannot be used.
[[nodiscard]] Result<CgroupLayout> open_cgroup_v1_layout(const CgroupLayoutRequest& request);
// Moves any thread left in the host's groups back, removes them and undoes
// subtree_control; problems are logged.
void close_cgroup_layout(const CgroupLayout& layout);

// Where in a hierarchy mounted at `mount` the cgroup `path` (from
// /proc/<pid>/cgroup) is: mount + path when that exists; else, for a
// container whose mount shows only its own subtree, the longest tail of
// `path` that exists under the mount; else the mount itself.
std::string locate_cgroup_dir(const std::string& mount, std::string_view path);

// Moves every task listed in dir/<threads_file> to to_dir/<threads_file>;
// tasks that exit meanwhile are skipped. The first error, after trying all.
[[nodiscard]] Status move_all_threads(const CgroupHierarchy& hierarchy, const std::string& dir,
                                      const std::string& to_dir);
// Empties `dir` into `to_dir` and removes it, trying again for a while when
// tasks (new threads of a process being moved) keep it busy. A directory
// that is already gone counts as removed.
[[nodiscard]] Status remove_cgroup_dir(const CgroupHierarchy& hierarchy, const std::string& dir,
                                       const std::string& to_dir);
// Removes groups named malv-<pid> in the host's cgroup that a host which no
// longer runs left behind, when no task is left in them (a populated one is
// left alone and logged: it may belong to a host in another pid namespace).
// A group named for this process's own pid that this process did not make
// is one of those: an earlier process with the same pid left it.
void remove_stale_groups(const CgroupHierarchy& hierarchy);
// Removes the stale groups, then makes hierarchy.group_dir (an error if it
// exists: another CpuGroups of this process holds it) and records it as
// this process's until close_cgroup_layout().
[[nodiscard]] Status make_group_dir(const CgroupHierarchy& hierarchy);

}  // namespace malv::cpu_control
