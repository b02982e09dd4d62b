// CgroupBackend: VM groups as cgroup directories (v1 or v2), laid out by
// cpu_control/cgroup_layout.h.
//
// Where threads go back to. attach_process() records the process's cgroup
// in each hierarchy before moving it, and remove_vm() moves the process
// back there (or, when that cgroup is gone or refuses it, to the host's
// cgroup); any thread still in the group after that (a host thread given by
// attach_thread, or a thread of a process moved elsewhere) goes to the
// thread's recorded cgroup or to the host's. A thread or process that
// exits meanwhile is skipped.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cpu_control/cgroup_layout.h"
#include "cpu_control/group_backend.h"

namespace malv::cpu_control {

class CgroupBackend final : public GroupBackend {
 public:
  explicit CgroupBackend(CgroupLayout layout) : layout_(std::move(layout)) {}

  Mechanism mechanism() const override { return layout_.mechanism; }
  std::string describe() const override;
  bool controls_weight() const override { return true; }
  bool controls_cpus() const override { return layout_.cpuset_hierarchy >= 0; }

  Status add_vm(const std::string& vm, const std::vector<int>& host_cpus) override;
  Status remove_vm(const std::string& vm) override;
  Status attach_process(const std::string& vm, pid_t pid) override;
  Status attach_thread(const std::string& vm, pid_t tid) override;
  Status detach_thread(const std::string& vm, pid_t tid) override;
  Status set_weight(const std::string& vm, std::uint32_t weight) override;
  Status set_cpus(const std::string& vm, const std::vector<int>& cpus) override;
  Result<std::optional<std::int64_t>> cpu_time_ns(const std::string& vm) const override;
  std::vector<pid_t> threads(const std::string& vm) const override;
  void close() override;

 private:
  // A process or thread moved into a VM group, and the cgroup it came from
  // in each hierarchy (empty: unknown, use the host's).
  struct Origin {
    std::uint64_t start_time = 0;  // tells a reused id apart
    std::vector<std::string> dirs;
  };
  struct Vm {
    std::map<pid_t, Origin> processes;
    std::map<pid_t, Origin> threads;
  };

  // Where `id` is now in each hierarchy; a cgroup inside the host's group
  // (another VM's) is not an origin, so it is taken from that VM's record.
  Origin origin_of(pid_t id, std::uint64_t start_time, bool process);
  // Where `tid` goes when it leaves a VM group, in hierarchy `index`.
  std::string return_dir(const Vm& record, pid_t tid, std::size_t index) const;
  bool inside_host_group(const std::string& dir, std::size_t index) const;
  // Moves `id` (a process: cgroup.procs, else the threads file) to
  // `origin`'s cgroups, falling back to the host's; skipped when it is gone.
  void move_back(pid_t id, const Origin& origin, bool process) const;

  CgroupLayout layout_;
  std::map<std::string, Vm, std::less<>> vms_;
};

}  // namespace malv::cpu_control
