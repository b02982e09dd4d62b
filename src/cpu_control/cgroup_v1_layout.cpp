// open_cgroup_v1_layout: the cpu, cpuacct and cpuset hierarchies of cgroup
// v1, mounted separately (/sys/fs/cgroup/cpu, .../cpuacct) or co-mounted
// (/sys/fs/cgroup/cpu,cpuacct with cpu and cpuacct as links to it).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits.h>
#include <stdlib.h>

#include <set>

#include "base/log.h"
#include "cpu_control/cgroup_files.h"
#include "cpu_control/cgroup_layout.h"
#include "cpu_control/proc_threads.h"

namespace malv::cpu_control {
namespace {

std::string canonical(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string basename_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The host's cgroup path in the v1 hierarchy carrying `controller`; "/"
// when /proc/self/cgroup does not name it.
std::string host_path(const std::vector<CgroupMembership>& lines, std::string_view controller) {
  for (const CgroupMembership& line : lines) {
    for (const std::string& name : line.controllers) {
      if (name == controller) return line.path;
    }
  }
  return "/";
}

CgroupHierarchy hierarchy_at(const std::string& mount, std::string controller,
                             const std::vector<CgroupMembership>& self,
                             const std::string& group_name) {
  CgroupHierarchy hierarchy;
  hierarchy.label = basename_of(canonical(mount));
  hierarchy.controller = std::move(controller);
  hierarchy.mount = mount;
  hierarchy.host_dir = locate_cgroup_dir(mount, host_path(self, hierarchy.controller));
  hierarchy.group_dir = fmt::format("{}/{}", hierarchy.host_dir, group_name);
  hierarchy.threads_file = "tasks";
  return hierarchy;
}

// A new cpuset group takes no task until it has CPUs and memory nodes
// (ENOSPC): give the host's group those of the host's cgroup.
Status copy_cpuset(const CgroupHierarchy& cpuset) {
  for (const char* name : {"cpuset.mems", "cpuset.cpus"}) {
    MALV_ASSIGN_OR_RETURN(std::string value,
                          read_text(fmt::format("{}/{}", cpuset.host_dir, name)));
    value = trimmed(std::move(value));
    if (value.empty()) {
      const std::string effective = std::string_view(name) == "cpuset.cpus"
                                        ? "cpuset.effective_cpus"
                                        : "cpuset.effective_mems";
      MALV_ASSIGN_OR_RETURN(value, read_text(fmt::format("{}/{}", cpuset.host_dir, effective)));
      value = trimmed(std::move(value));
    }
    MALV_TRY(write_text(fmt::format("{}/{}", cpuset.group_dir, name), value));
  }
  return ok_status();
}

}  // namespace

Result<CgroupLayout> open_cgroup_v1_layout(const CgroupLayoutRequest& request) {
  std::string cpu_mount;
  std::string cpuacct_mount;
  std::string cpuset_mount;
  std::set<std::string> seen;
  for (const std::string& name : subdirectories(request.cgroup_root)) {
    const std::string mount = fmt::format("{}/{}", request.cgroup_root, name);
    if (file_exists(mount + "/cgroup.controllers")) continue;  // cgroup v2
    if (!seen.insert(canonical(mount)).second) continue;       // a link to a co-mount
    if (cpu_mount.empty() && file_exists(mount + "/cpu.shares")) cpu_mount = mount;
    if (cpuacct_mount.empty() && file_exists(mount + "/cpuacct.usage")) cpuacct_mount = mount;
    if (cpuset_mount.empty() && file_exists(mount + "/cpuset.cpus")) cpuset_mount = mount;
  }
  if (cpu_mount.empty()) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("no cgroup v1 cpu hierarchy under {} (no directory there has "
                             "cpu.shares)",
                             request.cgroup_root));
  }

  const std::vector<CgroupMembership> self = read_cgroup_membership(0);
  CgroupLayout layout;
  layout.mechanism = Mechanism::kCgroupV1;
  layout.hierarchies.push_back(hierarchy_at(cpu_mount, "cpu", self, request.group_name));
  MALV_TRY_CONTEXT(make_group_dir(layout.hierarchies[0]),
                   "the cgroup v1 cpu hierarchy is not writable");

  std::vector<std::string> notes;
  if (!cpuacct_mount.empty() && canonical(cpuacct_mount) == canonical(cpu_mount)) {
    layout.usage_hierarchy = 0;  // cpu,cpuacct co-mounted
  } else if (!cpuacct_mount.empty()) {
    CgroupHierarchy cpuacct = hierarchy_at(cpuacct_mount, "cpuacct", self, request.group_name);
    if (Status made = make_group_dir(cpuacct); made.ok()) {
      layout.usage_hierarchy = static_cast<int>(layout.hierarchies.size());
      layout.hierarchies.push_back(std::move(cpuacct));
    } else {
      notes.push_back(
          fmt::format("no cpuacct ({}): CPU time from schedstat", made.error().to_string()));
    }
  } else {
    notes.emplace_back("no cpuacct hierarchy: CPU time from schedstat");
  }

  if (!cpuset_mount.empty()) {
    CgroupHierarchy cpuset = hierarchy_at(cpuset_mount, "cpuset", self, request.group_name);
    Status made = make_group_dir(cpuset);
    if (made.ok()) {
      made = copy_cpuset(cpuset);
      if (!made.ok()) (void)remove_directory(cpuset.group_dir);
    }
    if (made.ok()) {
      layout.cpuset_hierarchy = static_cast<int>(layout.hierarchies.size());
      layout.hierarchies.push_back(std::move(cpuset));
    } else {
      notes.push_back(
          fmt::format("no cpuset ({}): placement by thread affinity", made.error().to_string()));
    }
  } else {
    notes.emplace_back("no cpuset hierarchy: placement by thread affinity");
  }
  layout.notes = fmt::format("{}", fmt::join(notes, "; "));
  return layout;
}

}  // namespace malv::cpu_control
