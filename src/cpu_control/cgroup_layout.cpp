#include "cpu_control/cgroup_layout.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "base/log.h"
#include "cpu_control/cgroup_files.h"
#include "cpu_control/proc_threads.h"

namespace malv::cpu_control {
namespace {

constexpr std::string_view kLog = "cpu_control";

// How long remove_cgroup_dir keeps emptying a busy directory: a process
// that forks threads while being moved can refill it a few times.
constexpr int kRemoveAttempts = 20;
constexpr auto kRemoveBackoff = std::chrono::milliseconds(2);

std::string join_path(std::string_view base, std::string_view tail) {
  while (!tail.empty() && tail.front() == '/') tail.remove_prefix(1);
  if (tail.empty()) return std::string(base);
  return fmt::format("{}/{}", base, tail);
}

// "malv-1234" -> 1234.
std::optional<pid_t> stale_candidate_pid(std::string_view name) {
  constexpr std::string_view kPrefix = "malv-";
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  const std::string_view digits = name.substr(kPrefix.size());
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || pid <= 0) {
    return std::nullopt;
  }
  return pid;
}

bool has_tasks(const CgroupHierarchy& hierarchy, const std::string& dir) {
  const auto tasks = read_tasks(join_path(dir, hierarchy.threads_file));
  return !tasks.ok() || !tasks->empty();  // unreadable: assume in use
}

// The group directories this process made and has not closed: a malv-<pid>
// group named for this process's own pid but not among them was left by an
// earlier process that had the same pid (pids are reused), so it is stale.
std::mutex g_held_mutex;
std::set<std::string>& held_group_dirs() {
  static std::set<std::string> dirs;
  return dirs;
}

bool held_by_this_process(const std::string& dir) {
  std::lock_guard lock(g_held_mutex);
  return held_group_dirs().count(dir) != 0;
}

}  // namespace

std::string CgroupHierarchy::vm_dir(std::string_view vm) const { return join_path(group_dir, vm); }

std::optional<std::string> CgroupHierarchy::dir_of(pid_t tid) const {
  for (const CgroupMembership& line : read_cgroup_membership(tid)) {
    const bool match = controller.empty()
                           ? line.hierarchy_id == 0 && line.controllers.empty()
                           : std::find(line.controllers.begin(), line.controllers.end(),
                                       controller) != line.controllers.end();
    if (match) return locate_cgroup_dir(mount, line.path);
  }
  return std::nullopt;
}

std::string locate_cgroup_dir(const std::string& mount, std::string_view path) {
  std::string_view tail = path;
  for (;;) {
    while (!tail.empty() && tail.front() == '/') tail.remove_prefix(1);
    if (tail.empty()) return mount;
    const std::string candidate = join_path(mount, tail);
    if (is_directory(candidate)) return candidate;
    const std::size_t slash = tail.find('/');
    if (slash == std::string_view::npos) return mount;
    tail.remove_prefix(slash);
  }
}

Status move_all_threads(const CgroupHierarchy& hierarchy, const std::string& dir,
                        const std::string& to_dir) {
  MALV_ASSIGN_OR_RETURN(const std::vector<pid_t> tids,
                        read_tasks(join_path(dir, hierarchy.threads_file)));
  const std::string target = join_path(to_dir, hierarchy.threads_file);
  Status first_error;
  for (const pid_t tid : tids) {
    Result<bool> moved = write_task(target, tid);
    if (!moved.ok() && first_error.ok()) first_error = std::move(moved).error();
  }
  return first_error;
}

Status remove_cgroup_dir(const CgroupHierarchy& hierarchy, const std::string& dir,
                         const std::string& to_dir) {
  Status last_move;
  for (int attempt = 0; attempt < kRemoveAttempts; ++attempt) {
    if (!is_directory(dir)) return ok_status();
    last_move = move_all_threads(hierarchy, dir, to_dir);
    if (::rmdir(dir.c_str()) == 0) return ok_status();
    const int error = errno;
    if (error == ENOENT) return ok_status();
    if (error != EBUSY) return errno_error(fmt::format("rmdir {}", dir), error);
    std::this_thread::sleep_for(kRemoveBackoff * (attempt + 1));
  }
  Error busy(ErrorCode::kUnavailable,
             fmt::format("rmdir {}: still busy after moving its tasks to {} {} times", dir, to_dir,
                         kRemoveAttempts));
  if (!last_move.ok()) busy.with_context(last_move.error().to_string());
  return busy;
}

void remove_stale_groups(const CgroupHierarchy& hierarchy) {
  for (const std::string& name : subdirectories(hierarchy.host_dir)) {
    const auto pid = stale_candidate_pid(name);
    if (!pid) continue;
    const std::string group = join_path(hierarchy.host_dir, name);
    if (*pid == ::getpid() ? held_by_this_process(group) : process_exists(*pid)) continue;
    const std::vector<std::string> vms = subdirectories(group);
    bool populated = has_tasks(hierarchy, group);
    for (const std::string& vm : vms) {
      populated = populated || has_tasks(hierarchy, join_path(group, vm));
    }
    if (populated) {
      log::warn(kLog,
                "{} looks left by a host (pid {}) that no longer runs, but tasks are in it; "
                "left alone",
                group, *pid);
      continue;
    }
    int error = 0;
    for (const std::string& vm : vms) {
      if (::rmdir(join_path(group, vm).c_str()) != 0 && error == 0) error = errno;
    }
    if (::rmdir(group.c_str()) != 0 && error == 0) error = errno;
    if (error == 0) {
      log::info(kLog, "removed {}, left by a host (pid {}) that no longer runs", group, *pid);
    } else {
      log::warn(kLog, "could not remove {}, left by pid {}: {}", group, *pid, std::strerror(error));
    }
  }
}

Status make_group_dir(const CgroupHierarchy& hierarchy) {
  remove_stale_groups(hierarchy);
  MALV_TRY(make_directory(hierarchy.group_dir));
  std::lock_guard lock(g_held_mutex);
  held_group_dirs().insert(hierarchy.group_dir);
  return ok_status();
}

void close_cgroup_layout(const CgroupLayout& layout) {
  for (const CgroupHierarchy& hierarchy : layout.hierarchies) {
    if (Status removed = remove_cgroup_dir(hierarchy, hierarchy.group_dir, hierarchy.host_dir);
        !removed.ok()) {
      log::warn(kLog, "host group not removed: {}", removed.error().to_string());
    }
    std::lock_guard lock(g_held_mutex);
    held_group_dirs().erase(hierarchy.group_dir);
  }
  if (layout.hierarchies.empty()) return;
  const std::string subtree = join_path(layout.hierarchies[0].host_dir, "cgroup.subtree_control");
  for (const std::string& undo : layout.subtree_undo) {
    // Fails (EBUSY) while another group below the host's cgroup uses the
    // controller; it then stays on, as it would for that group's owner.
    if (Status written = write_text(subtree, undo); !written.ok()) {
      log::info(kLog, "left {} as it is: {}", subtree, written.error().to_string());
    }
  }
}

}  // namespace malv::cpu_control
