// ThreadListBackend: VM groups as lists of processes and threads, for a
// host that can write no cpu controller (not root, a read-only cgroup
// mount, no cgroups at all). It changes nothing itself: CpuGroups sets
// nice values and affinity masks on the threads it lists
// (controls_weight() and controls_cpus() are false).
//
// A VM's threads are the threads of its processes now (so threads a guest
// makes later count, and inherit their maker's nice value and affinity)
// plus the single threads given to it, less the threads taken out with
// detach_thread or given to another VM. Ids are kept with their start
// times, so an exited thread's reused id is not mistaken for it.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cpu_control/group_backend.h"

namespace malv::cpu_control {

class ThreadListBackend final : public GroupBackend {
 public:
  // `why`: why no cgroup mechanism is used, for describe().
  explicit ThreadListBackend(std::string why) : why_(std::move(why)) {}

  Mechanism mechanism() const override { return Mechanism::kThreadFallback; }
  std::string describe() const override;
  bool controls_weight() const override { return false; }
  bool controls_cpus() const override { return false; }

  Status add_vm(const std::string& vm, const std::vector<int>& host_cpus) override;
  Status remove_vm(const std::string& vm) override;
  Status attach_process(const std::string& vm, pid_t pid) override;
  Status attach_thread(const std::string& vm, pid_t tid) override;
  Status detach_thread(const std::string& vm, pid_t tid) override;
  Status set_weight(const std::string& vm, std::uint32_t weight) override;
  Status set_cpus(const std::string& vm, const std::vector<int>& cpus) override;
  Result<std::optional<std::int64_t>> cpu_time_ns(const std::string& vm) const override;
  std::vector<pid_t> threads(const std::string& vm) const override;
  void close() override { vms_.clear(); }

 private:
  struct Vm {
    std::map<pid_t, std::uint64_t> processes;  // id -> start time
    std::map<pid_t, std::uint64_t> threads;
    std::map<pid_t, std::uint64_t> excluded;  // threads of its processes that left
  };
  // Takes `tid` out of every VM's list (a thread is in one group at most).
  void forget_thread(pid_t tid, std::uint64_t start_time);

  std::string why_;
  std::map<std::string, Vm, std::less<>> vms_;
};

}  // namespace malv::cpu_control
