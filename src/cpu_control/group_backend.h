// GroupBackend: what one mechanism does to give a VM its own CPU group.
// Internal to cpu_control: CpuGroups validates names, ids and values,
// keeps each VM's settings and the lock, and calls exactly one backend.
//
// A backend that cannot weigh or place a group (the thread fallback, or a
// cgroup layout without cpuset) says so through controls_weight() and
// controls_cpus(); CpuGroups then sets nice values and affinity masks on
// the group's threads itself (cpu_control/thread_settings.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cpu_control/mechanism.h"
#include "malv/result.h"

namespace malv::cpu_control {

class GroupBackend {
 public:
  virtual ~GroupBackend() = default;

  virtual Mechanism mechanism() const = 0;
  // Where the groups live, and what is missing ("no cpuset: ...").
  virtual std::string describe() const = 0;
  virtual bool controls_weight() const = 0;
  virtual bool controls_cpus() const = 0;

  // `vm` is a valid, new name; `host_cpus` are the CPUs the VM may use.
  virtual Status add_vm(const std::string& vm, const std::vector<int>& host_cpus) = 0;
  // Moves every thread back, then removes all that add_vm made. The VM is
  // kept (and may be removed again) when this fails.
  virtual Status remove_vm(const std::string& vm) = 0;
  // kNotFound when the process or thread does not exist (or exits first).
  virtual Status attach_process(const std::string& vm, pid_t pid) = 0;
  virtual Status attach_thread(const std::string& vm, pid_t tid) = 0;
  // `tid` is in `vm`'s group; a thread that has exited is not an error.
  virtual Status detach_thread(const std::string& vm, pid_t tid) = 0;
  // Only called when controls_weight() / controls_cpus(); cpus is never empty.
  virtual Status set_weight(const std::string& vm, std::uint32_t weight) = 0;
  virtual Status set_cpus(const std::string& vm, const std::vector<int>& cpus) = 0;
  // The group's CPU time, exited threads included; nullopt when this
  // backend cannot count it (CpuGroups then sums its threads' schedstat).
  virtual Result<std::optional<std::int64_t>> cpu_time_ns(const std::string& vm) const = 0;
  // The threads in the group now, sorted.
  virtual std::vector<pid_t> threads(const std::string& vm) const = 0;
  // Removes what opening made; every VM has been removed before.
  virtual void close() = 0;
};

}  // namespace malv::cpu_control
