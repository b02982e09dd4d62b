#include "cpu_control/thread_settings.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "cpu_control/cpu_list.h"
#include "cpu_control/proc_threads.h"

namespace malv::cpu_control {
namespace {

constexpr std::string_view kLog = "cpu_control";

// getpriority(2) returns -1 both as a nice value and as an error.
std::optional<int> nice_of(pid_t tid) {
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (nice == -1 && errno != 0) return std::nullopt;
  return nice;
}

}  // namespace

ThreadSettings::Saved* ThreadSettings::record(pid_t tid, std::string_view vm) {
  const auto start_time = thread_start_time(tid);
  if (!start_time) return nullptr;
  auto it = saved_.find(tid);
  if (it != saved_.end() && it->second.start_time != *start_time) {
    saved_.erase(it);  // the id of a thread that exited, now another thread's
    it = saved_.end();
  }
  if (it == saved_.end()) {
    Saved fresh{.vm = std::string(vm), .start_time = *start_time};
    // Made by a thread already changed: what it had is the process's.
    if (const Saved* process = process_record(tid)) {
      fresh.nice = process->nice;
      fresh.affinity = process->affinity;
    }
    it = saved_.emplace(tid, std::move(fresh)).first;
  }
  it->second.vm = std::string(vm);
  return &it->second;
}

Result<bool> ThreadSettings::set_nice(pid_t tid, std::string_view vm, int nice) {
  Saved* saved = record(tid, vm);
  if (saved == nullptr) return false;
  if (!saved->nice) {
    const auto before = nice_of(tid);
    if (!before) return false;
    saved->nice = *before;
  }
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice) != 0) {
    const int error = errno;
    if (error == ESRCH) return false;
    return errno_error(fmt::format("setpriority of thread {} to nice {}", tid, nice), error);
  }
  return true;
}

Result<bool> ThreadSettings::set_affinity(pid_t tid, std::string_view vm,
                                          const std::vector<int>& cpus) {
  Saved* saved = record(tid, vm);
  if (saved == nullptr) return false;
  if (!saved->affinity) {
    auto before = thread_affinity(tid);
    if (!before.ok())
      return before.error().code() == ErrorCode::kNotFound ? Result<bool>(false) : before.error();
    saved->affinity = std::move(before).value();
  }
  Status set = set_thread_affinity(tid, cpus);
  if (!set.ok()) {
    if (set.error().code() == ErrorCode::kNotFound) return false;
    return std::move(set).error();
  }
  return true;
}

void ThreadSettings::note_process(pid_t pid, std::string_view vm) {
  if (Saved* saved = record(pid, vm)) saved->whole_process = true;
}

const ThreadSettings::Saved* ThreadSettings::process_record(pid_t tid) const {
  const auto process = process_of(tid);
  if (!process || *process == tid) return nullptr;
  const auto it = saved_.find(*process);
  if (it == saved_.end() || !it->second.whole_process ||
      thread_start_time(*process) != it->second.start_time) {
    return nullptr;
  }
  return &it->second;
}

const ThreadSettings::Saved* ThreadSettings::saved_for(pid_t tid) const {
  const auto start_time = thread_start_time(tid);
  if (!start_time) return nullptr;
  if (const auto it = saved_.find(tid); it != saved_.end()) {
    return it->second.start_time == *start_time ? &it->second : nullptr;
  }
  return process_record(tid);
}

void ThreadSettings::put_back(pid_t tid, const Saved& saved) {
  if (saved.nice && ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), *saved.nice) != 0 &&
      errno != ESRCH) {
    log::warn(kLog, "thread {} keeps its nice value, not {}: {}", tid, *saved.nice,
              std::strerror(errno));
  }
  if (saved.affinity) {
    if (Status set = set_thread_affinity(tid, *saved.affinity);
        !set.ok() && set.error().code() != ErrorCode::kNotFound) {
      log::warn(kLog, "thread {} keeps its CPUs: {}", tid, set.error().to_string());
    }
  }
}

void ThreadSettings::restore(pid_t tid) {
  if (const Saved* saved = saved_for(tid)) put_back(tid, *saved);
  saved_.erase(tid);
}

void ThreadSettings::restore_if_elsewhere(pid_t tid, std::string_view vm) {
  const Saved* saved = saved_for(tid);
  if (saved == nullptr || saved->vm == vm) return;
  put_back(tid, *saved);
  saved_.erase(tid);
}

void ThreadSettings::restore_vm(std::string_view vm, const std::vector<pid_t>& threads) {
  // Threads the process made later first: they copy their process's record.
  for (const pid_t tid : threads) {
    if (saved_.count(tid) == 0) {
      if (const Saved* saved = saved_for(tid)) put_back(tid, *saved);
    }
  }
  for (auto it = saved_.begin(); it != saved_.end();) {
    if (it->second.vm != vm) {
      ++it;
      continue;
    }
    if (thread_start_time(it->first) == it->second.start_time) put_back(it->first, it->second);
    it = saved_.erase(it);
  }
}

std::optional<int> ThreadSettings::saved_nice(pid_t tid) const {
  const auto it = saved_.find(tid);
  return it == saved_.end() ? std::nullopt : it->second.nice;
}

std::optional<std::vector<int>> ThreadSettings::saved_affinity(pid_t tid) const {
  const auto it = saved_.find(tid);
  return it == saved_.end() ? std::nullopt : it->second.affinity;
}

}  // namespace malv::cpu_control
