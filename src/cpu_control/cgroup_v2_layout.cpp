// open_cgroup_v2_layout: the unified hierarchy, mounted at the cgroup root
// (a pure v2 host) or at <root>/unified (a hybrid host).
//
// Threads of one process may sit in different cgroups only in threaded
// mode: the host's group and every VM group are made "threaded", which
// turns the host's own cgroup into their threaded domain. Host threads
// then move into a VM group one by one (cgroup.threads), and a guest
// process moves whole (cgroup.procs). Only threaded controllers work below
// a threaded domain; cpu and cpuset are two of them, which is all we use.
#include <fmt/format.h>

#include "base/log.h"
#include "cpu_control/cgroup_files.h"
#include "cpu_control/cgroup_layout.h"
#include "cpu_control/proc_threads.h"

namespace malv::cpu_control {
namespace {

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// Writes each entry of `undo` (reverse order of switching on), ignoring errors.
void switch_back(const std::string& subtree, const std::vector<std::string>& undo) {
  for (const std::string& entry : undo) (void)write_text(subtree, entry);
}

}  // namespace

Result<CgroupLayout> open_cgroup_v2_layout(const CgroupLayoutRequest& request) {
  std::string mount;
  for (const std::string& candidate : {request.cgroup_root, request.cgroup_root + "/unified"}) {
    if (file_exists(candidate + "/cgroup.controllers")) {
      mount = candidate;
      break;
    }
  }
  if (mount.empty()) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("no cgroup v2 hierarchy at {} or {}/unified (no cgroup.controllers)",
                             request.cgroup_root, request.cgroup_root));
  }

  CgroupHierarchy hierarchy;
  hierarchy.label = "unified";
  hierarchy.mount = mount;
  std::string path = "/";
  for (const CgroupMembership& line : read_cgroup_membership(0)) {
    if (line.hierarchy_id == 0 && line.controllers.empty()) path = line.path;
  }
  hierarchy.host_dir = locate_cgroup_dir(mount, path);
  hierarchy.group_dir = fmt::format("{}/{}", hierarchy.host_dir, request.group_name);
  hierarchy.threads_file = "cgroup.threads";

  const std::string controllers_file = hierarchy.host_dir + "/cgroup.controllers";
  MALV_ASSIGN_OR_RETURN(const std::string controllers, read_text(controllers_file));
  if (!has_word(controllers, "cpu")) {
    return Error(ErrorCode::kUnavailable,
                 fmt::format("{} offers no cpu controller (it has '{}'); on a hybrid host the cpu "
                             "controller belongs to cgroup v1",
                             controllers_file, trimmed(controllers)));
  }
  const std::string subtree_file = hierarchy.host_dir + "/cgroup.subtree_control";
  MALV_ASSIGN_OR_RETURN(const std::string subtree, read_text(subtree_file));

  CgroupLayout layout;
  layout.mechanism = Mechanism::kCgroupV2;
  if (!has_word(subtree, "cpu")) {
    MALV_TRY_CONTEXT(write_text(subtree_file, "+cpu"),
                     "switching the cpu controller on below the host's cgroup");
    layout.subtree_undo.insert(layout.subtree_undo.begin(), "-cpu");
  }
  bool cpuset = has_word(subtree, "cpuset");
  if (!cpuset && has_word(controllers, "cpuset")) {
    if (Status on = write_text(subtree_file, "+cpuset"); on.ok()) {
      cpuset = true;
      layout.subtree_undo.insert(layout.subtree_undo.begin(), "-cpuset");
    } else {
      layout.notes =
          fmt::format("no cpuset ({}): placement by thread affinity", on.error().to_string());
    }
  } else if (!cpuset) {
    layout.notes = fmt::format("{} offers no cpuset controller: placement by thread affinity",
                               controllers_file);
  }

  Status made = make_group_dir(hierarchy);
  if (made.ok()) {
    made = write_text(hierarchy.group_dir + "/cgroup.type", "threaded");
    if (!made.ok()) {
      made = std::move(made).error().with_context(
          fmt::format("the host's cgroup {} cannot be a threaded domain (it has domain controllers "
                      "switched on, or populated domain children)",
                      hierarchy.host_dir));
    }
    if (made.ok()) {
      made = write_text(hierarchy.group_dir + "/cgroup.subtree_control",
                        cpuset ? "+cpu +cpuset" : "+cpu");
    }
    if (!made.ok()) (void)remove_directory(hierarchy.group_dir);
  }
  if (!made.ok()) {
    switch_back(subtree_file, layout.subtree_undo);
    return std::move(made).error();
  }
  layout.hierarchies.push_back(std::move(hierarchy));
  layout.usage_hierarchy = 0;
  layout.cpuset_hierarchy = cpuset ? 0 : -1;
  return layout;
}

}  // namespace malv::cpu_control
