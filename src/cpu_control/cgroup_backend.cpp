#include "cpu_control/cgroup_backend.h"

#include <fmt/format.h>

#include <charconv>
#include <sstream>

#include "base/log.h"
#include "cpu_control/cgroup_files.h"
#include "cpu_control/cpu_list.h"
#include "cpu_control/cpu_weight.h"
#include "cpu_control/proc_threads.h"

namespace malv::cpu_control {
namespace {

constexpr std::string_view kLog = "cpu_control";

Error gone(std::string_view what, pid_t id) {
  return Error(ErrorCode::kNotFound, fmt::format("{} {} does not exist (it exited?)", what, id));
}

std::optional<std::int64_t> parse_int64(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::string CgroupBackend::describe() const {
  std::string where;
  for (const CgroupHierarchy& hierarchy : layout_.hierarchies) {
    if (!where.empty()) where += ", ";
    where += fmt::format("{} ({})", hierarchy.group_dir, hierarchy.label);
  }
  std::string text = layout_.mechanism == Mechanism::kCgroupV2
                         ? fmt::format("threaded VM groups in {}", where)
                         : fmt::format("VM groups in {}", where);
  if (!layout_.notes.empty()) text += "; " + layout_.notes;
  return text;
}

bool CgroupBackend::inside_host_group(const std::string& dir, std::size_t index) const {
  const std::string& group = layout_.hierarchies[index].group_dir;
  return dir == group || dir.compare(0, group.size() + 1, group + "/") == 0;
}

CgroupBackend::Origin CgroupBackend::origin_of(pid_t id, std::uint64_t start_time, bool process) {
  Origin origin;
  origin.start_time = start_time;
  for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
    std::string dir = layout_.hierarchies[i].dir_of(id).value_or("");
    if (inside_host_group(dir, i)) {
      // Moving from one VM to another: keep where it came from first.
      dir.clear();
      for (const auto& [name, vm] : vms_) {
        const auto& records = process ? vm.processes : vm.threads;
        const auto it = records.find(id);
        if (it != records.end() && it->second.start_time == start_time) dir = it->second.dirs[i];
      }
    }
    origin.dirs.push_back(std::move(dir));
  }
  return origin;
}

std::string CgroupBackend::return_dir(const Vm& record, pid_t tid, std::size_t index) const {
  const CgroupHierarchy& hierarchy = layout_.hierarchies[index];
  auto usable = [&](const std::map<pid_t, Origin>& records, pid_t id) -> const std::string* {
    const auto it = records.find(id);
    if (it == records.end() || it->second.dirs[index].empty()) return nullptr;
    if (thread_start_time(id) != it->second.start_time) return nullptr;
    if (!is_directory(it->second.dirs[index])) return nullptr;
    return &it->second.dirs[index];
  };
  if (const std::string* dir = usable(record.threads, tid)) return *dir;
  if (const auto process = process_of(tid)) {
    if (const std::string* dir = usable(record.processes, *process)) return *dir;
  }
  return hierarchy.host_dir;
}

void CgroupBackend::move_back(pid_t id, const Origin& origin, bool process) const {
  if (thread_start_time(id) != origin.start_time) return;  // exited (or id reused)
  for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
    const CgroupHierarchy& hierarchy = layout_.hierarchies[i];
    const std::string file = process ? "cgroup.procs" : hierarchy.threads_file;
    std::string dir = origin.dirs[i];
    if (dir.empty() || !is_directory(dir)) dir = hierarchy.host_dir;
    Result<bool> moved = write_task(fmt::format("{}/{}", dir, file), id);
    if (!moved.ok() && dir != hierarchy.host_dir) {
      moved = write_task(fmt::format("{}/{}", hierarchy.host_dir, file), id);
    }
    if (!moved.ok()) log::warn(kLog, "{} not moved back: {}", id, moved.error().to_string());
  }
}

Status CgroupBackend::add_vm(const std::string& vm, const std::vector<int>& host_cpus) {
  std::vector<std::string> made;
  auto set_up = [&]() -> Status {
    for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
      const CgroupHierarchy& hierarchy = layout_.hierarchies[i];
      const std::string dir = hierarchy.vm_dir(vm);
      MALV_TRY(make_directory(dir));
      made.push_back(dir);
      // v2: a group below a threaded one is "domain invalid" until threaded.
      if (layout_.mechanism == Mechanism::kCgroupV2) {
        MALV_TRY(write_text(dir + "/cgroup.type", "threaded"));
      }
      if (static_cast<int>(i) == layout_.cpuset_hierarchy) {
        // v1: a new cpuset takes no task until it has memory nodes and CPUs.
        if (layout_.mechanism == Mechanism::kCgroupV1) {
          MALV_ASSIGN_OR_RETURN(const std::string mems,
                                read_text(hierarchy.group_dir + "/cpuset.mems"));
          MALV_TRY(write_text(dir + "/cpuset.mems", mems));
        }
        MALV_TRY(write_text(dir + "/cpuset.cpus", format_cpu_list(host_cpus)));
      }
    }
    return ok_status();
  };
  Status status = set_up();
  if (!status.ok()) {
    for (auto it = made.rbegin(); it != made.rend(); ++it) (void)remove_directory(*it);
    return std::move(status).error().with_context(fmt::format("adding VM '{}'", vm));
  }
  vms_[vm] = Vm{};
  return ok_status();
}

Status CgroupBackend::remove_vm(const std::string& vm) {
  const auto it = vms_.find(vm);
  if (it == vms_.end()) return ok_status();
  const Vm& record = it->second;
  // v2 moves a process across threaded domains only whole.
  if (layout_.mechanism == Mechanism::kCgroupV2) {
    for (const auto& [pid, origin] : record.processes) move_back(pid, origin, true);
  }
  for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
    const CgroupHierarchy& hierarchy = layout_.hierarchies[i];
    const std::string dir = hierarchy.vm_dir(vm);
    const auto tids = read_tasks(dir + "/" + hierarchy.threads_file);
    if (!tids.ok()) continue;
    for (const pid_t tid : *tids) {
      const std::string to = return_dir(record, tid, i);
      Result<bool> moved = write_task(fmt::format("{}/{}", to, hierarchy.threads_file), tid);
      if (!moved.ok() && to != hierarchy.host_dir) {
        moved = write_task(fmt::format("{}/{}", hierarchy.host_dir, hierarchy.threads_file), tid);
      }
      if (!moved.ok()) log::debug(kLog, "{}", moved.error().to_string());
    }
  }
  // Whatever is left (threads made meanwhile) goes to the host's cgroup.
  Status first_error;
  for (const CgroupHierarchy& hierarchy : layout_.hierarchies) {
    Status removed = remove_cgroup_dir(hierarchy, hierarchy.vm_dir(vm), hierarchy.host_dir);
    if (!removed.ok() && first_error.ok()) first_error = std::move(removed);
  }
  if (!first_error.ok()) {
    return std::move(first_error).error().with_context(fmt::format("removing VM '{}'", vm));
  }
  vms_.erase(it);
  return ok_status();
}

Status CgroupBackend::attach_process(const std::string& vm, pid_t pid) {
  const auto start_time = thread_start_time(pid);
  if (!start_time) return gone("process", pid);
  Origin origin = origin_of(pid, *start_time, true);
  for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
    const CgroupHierarchy& hierarchy = layout_.hierarchies[i];
    Result<bool> moved = write_task(hierarchy.vm_dir(vm) + "/cgroup.procs", pid);
    if (moved.ok() && *moved) continue;
    // Put it back where it was in the hierarchies done so far.
    for (std::size_t j = 0; j < i; ++j) {
      const CgroupHierarchy& done = layout_.hierarchies[j];
      const std::string& dir = origin.dirs[j].empty() ? done.host_dir : origin.dirs[j];
      (void)write_task(dir + "/cgroup.procs", pid);
    }
    if (!moved.ok()) return std::move(moved).error();
    return gone("process", pid);
  }
  for (auto& [name, other] : vms_) other.processes.erase(pid);
  vms_[vm].processes[pid] = std::move(origin);
  return ok_status();
}

Status CgroupBackend::attach_thread(const std::string& vm, pid_t tid) {
  const auto start_time = thread_start_time(tid);
  if (!start_time) return gone("thread", tid);
  Origin origin = origin_of(tid, *start_time, false);
  for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
    const CgroupHierarchy& hierarchy = layout_.hierarchies[i];
    Result<bool> moved = write_task(hierarchy.vm_dir(vm) + "/" + hierarchy.threads_file, tid);
    if (moved.ok() && *moved) continue;
    for (std::size_t j = 0; j < i; ++j) {
      const CgroupHierarchy& done = layout_.hierarchies[j];
      const std::string& dir = origin.dirs[j].empty() ? done.host_dir : origin.dirs[j];
      (void)write_task(dir + "/" + done.threads_file, tid);
    }
    if (moved.ok()) return gone("thread", tid);
    if (layout_.mechanism == Mechanism::kCgroupV2) {
      return Error(ErrorCode::kFailedPrecondition,
                   fmt::format("{}: cgroup v2 moves a single thread only inside its process's "
                               "threaded domain ({}); a thread of a process elsewhere joins with "
                               "its whole process (attach_process)",
                               moved.error().to_string(), hierarchy.host_dir));
    }
    return std::move(moved).error();
  }
  for (auto& [name, other] : vms_) other.threads.erase(tid);
  vms_[vm].threads[tid] = std::move(origin);
  return ok_status();
}

Status CgroupBackend::detach_thread(const std::string& vm, pid_t tid) {
  Vm& record = vms_[vm];
  for (std::size_t i = 0; i < layout_.hierarchies.size(); ++i) {
    const CgroupHierarchy& hierarchy = layout_.hierarchies[i];
    const std::string to = return_dir(record, tid, i);
    Result<bool> moved = write_task(fmt::format("{}/{}", to, hierarchy.threads_file), tid);
    if (!moved.ok() && to != hierarchy.host_dir) {
      moved = write_task(fmt::format("{}/{}", hierarchy.host_dir, hierarchy.threads_file), tid);
    }
    if (!moved.ok()) return std::move(moved).error();
    if (!*moved) break;  // exited: nothing left to move
  }
  record.threads.erase(tid);
  return ok_status();
}

Status CgroupBackend::set_weight(const std::string& vm, std::uint32_t weight) {
  const std::string dir = layout_.hierarchies[0].vm_dir(vm);
  if (layout_.mechanism == Mechanism::kCgroupV2) {
    return write_text(dir + "/cpu.weight", fmt::format("{}", weight));
  }
  return write_text(dir + "/cpu.shares", fmt::format("{}", weight_to_shares(weight)));
}

Status CgroupBackend::set_cpus(const std::string& vm, const std::vector<int>& cpus) {
  const CgroupHierarchy& cpuset = layout_.hierarchies[layout_.cpuset_hierarchy];
  return write_text(cpuset.vm_dir(vm) + "/cpuset.cpus", format_cpu_list(cpus));
}

Result<std::optional<std::int64_t>> CgroupBackend::cpu_time_ns(const std::string& vm) const {
  if (layout_.usage_hierarchy < 0) return std::optional<std::int64_t>();
  const std::string dir = layout_.hierarchies[layout_.usage_hierarchy].vm_dir(vm);
  if (layout_.mechanism == Mechanism::kCgroupV1) {
    const std::string file = dir + "/cpuacct.usage";
    MALV_ASSIGN_OR_RETURN(const std::string text, read_text(file));
    const auto ns = parse_int64(text);
    if (!ns) return Error(ErrorCode::kInternal, fmt::format("{} holds no number", file));
    return std::optional<std::int64_t>(*ns);
  }
  const std::string file = dir + "/cpu.stat";
  MALV_ASSIGN_OR_RETURN(const std::string text, read_text(file));
  std::istringstream lines(text);
  std::string key;
  std::int64_t value = 0;
  while (lines >> key >> value) {
    if (key == "usage_usec") return std::optional<std::int64_t>(value * 1000);
  }
  return Error(ErrorCode::kInternal, fmt::format("{} has no usage_usec", file));
}

std::vector<pid_t> CgroupBackend::threads(const std::string& vm) const {
  const CgroupHierarchy& cpu = layout_.hierarchies[0];
  return read_tasks(cpu.vm_dir(vm) + "/" + cpu.threads_file).value_or(std::vector<pid_t>{});
}

void CgroupBackend::close() {
  for (const auto& [vm, record] : vms_) {
    for (const CgroupHierarchy& hierarchy : layout_.hierarchies) {
      if (Status removed = remove_cgroup_dir(hierarchy, hierarchy.vm_dir(vm), hierarchy.host_dir);
          !removed.ok()) {
        log::warn(kLog, "VM group not removed: {}", removed.error().to_string());
      }
    }
  }
  vms_.clear();
  close_cgroup_layout(layout_);
}

}  // namespace malv::cpu_control
