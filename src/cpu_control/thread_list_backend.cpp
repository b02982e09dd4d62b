#include "cpu_control/thread_list_backend.h"

#include <fmt/format.h>

#include <algorithm>

#include "cpu_control/proc_threads.h"

namespace malv::cpu_control {
namespace {

bool same_thread(pid_t id, std::uint64_t start_time) { return thread_start_time(id) == start_time; }

}  // namespace

std::string ThreadListBackend::describe() const {
  return fmt::format("per-thread nice values and affinity ({})", why_);
}

Status ThreadListBackend::add_vm(const std::string& vm, const std::vector<int>&) {
  vms_[vm] = Vm{};
  return ok_status();
}

Status ThreadListBackend::remove_vm(const std::string& vm) {
  vms_.erase(vm);
  return ok_status();
}

void ThreadListBackend::forget_thread(pid_t tid, std::uint64_t start_time) {
  const auto process = process_of(tid);
  for (auto& [name, record] : vms_) {
    record.threads.erase(tid);
    if (process && record.processes.count(*process) != 0) record.excluded[tid] = start_time;
  }
}

Status ThreadListBackend::attach_process(const std::string& vm, pid_t pid) {
  const auto start_time = thread_start_time(pid);
  if (!start_time) {
    return Error(ErrorCode::kNotFound, fmt::format("process {} does not exist (it exited?)", pid));
  }
  for (auto& [name, record] : vms_) {
    record.processes.erase(pid);
    for (const pid_t tid : process_threads(pid)) {
      record.threads.erase(tid);
      record.excluded.erase(tid);
    }
  }
  vms_[vm].processes[pid] = *start_time;
  return ok_status();
}

Status ThreadListBackend::attach_thread(const std::string& vm, pid_t tid) {
  const auto start_time = thread_start_time(tid);
  if (!start_time) {
    return Error(ErrorCode::kNotFound, fmt::format("thread {} does not exist (it exited?)", tid));
  }
  forget_thread(tid, *start_time);
  Vm& record = vms_[vm];
  record.excluded.erase(tid);
  record.threads[tid] = *start_time;
  return ok_status();
}

Status ThreadListBackend::detach_thread(const std::string& vm, pid_t tid) {
  Vm& record = vms_[vm];
  record.threads.erase(tid);
  const auto process = process_of(tid);
  const auto start_time = thread_start_time(tid);
  if (process && start_time && record.processes.count(*process) != 0) {
    record.excluded[tid] = *start_time;
  }
  return ok_status();
}

Status ThreadListBackend::set_weight(const std::string&, std::uint32_t) {
  return Error(ErrorCode::kInternal, "the thread fallback sets no group weight");
}

Status ThreadListBackend::set_cpus(const std::string&, const std::vector<int>&) {
  return Error(ErrorCode::kInternal, "the thread fallback sets no group CPUs");
}

Result<std::optional<std::int64_t>> ThreadListBackend::cpu_time_ns(const std::string&) const {
  return std::optional<std::int64_t>();
}

std::vector<pid_t> ThreadListBackend::threads(const std::string& vm) const {
  std::vector<pid_t> tids;
  const auto it = vms_.find(vm);
  if (it == vms_.end()) return tids;
  const Vm& record = it->second;
  for (const auto& [pid, start_time] : record.processes) {
    if (!same_thread(pid, start_time)) continue;
    for (const pid_t tid : process_threads(pid)) {
      const auto left = record.excluded.find(tid);
      if (left != record.excluded.end() && same_thread(tid, left->second)) continue;
      tids.push_back(tid);
    }
  }
  for (const auto& [tid, start_time] : record.threads) {
    if (same_thread(tid, start_time)) tids.push_back(tid);
  }
  std::sort(tids.begin(), tids.end());
  tids.erase(std::unique(tids.begin(), tids.end()), tids.end());
  return tids;
}

}  // namespace malv::cpu_control
