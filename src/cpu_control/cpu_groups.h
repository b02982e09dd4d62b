// CpuGroups: per-VM CPU control on the host. Each VM gets a CPU group that
// the VM's threads join (a guest process whole, found e.g. by SO_PEERCRED,
// and single host threads working for the VM); the group has a weight (its
// share of contended CPU time) and a set of CPUs it may run on, and reports
// the CPU time its threads used and how long they waited for a CPU.
//
//   MALV_ASSIGN_OR_RETURN(auto groups, CpuGroups::open({}));
//   log::info("cpu_control", "{}", groups->describe());
//   MALV_TRY(groups->add_vm("vm-a"));
//   MALV_TRY(groups->attach_process("vm-a", guest_pid));
//   MALV_TRY(groups->set_weight("vm-a", 200));   // twice the default share
//   MALV_TRY(groups->set_cpus("vm-a", {2, 3}));
//   MALV_ASSIGN_OR_RETURN(CpuUsage used, groups->usage("vm-a"));
//   MALV_TRY(groups->remove_vm("vm-a"));         // threads go back; nothing left
//
// open() picks the mechanism at run time, best first (docs/cpu-control.md):
//   cgroup-v2        the unified hierarchy offers the cpu controller below the
//                    host's cgroup and the host can switch it on: threaded
//                    groups <host cgroup>/<group_name>/<vm>.
//   cgroup-v1        a writable v1 cpu hierarchy (with cpuacct and cpuset,
//                    separate or co-mounted): <mount>/<host path>/<group_name>/<vm>.
//   thread-fallback  neither (not root, read-only mounts): nice values and
//                    affinity masks on each of the group's threads, and
//                    what each had is put back when it leaves.
// describe() says which, where, and why the better ones were not used.
//
// The host's own threads stay in the host's cgroup. Only the threads given
// with attach_thread join a VM's group; the accelerator's workers, which run
// every VM's kernels, must stay out (they belong to no one VM).
//
// Everything made is undone: remove_vm moves the VM's threads back (to the
// cgroup each came from, else the host's; under the fallback, their own
// nice values and CPUs) and removes the group; the destructor removes every
// VM and the host's group. A group that a crashed host (malv-<pid>, pid no
// longer running) left empty is removed on open.
//
// Threads exit at any moment: one that exits between being listed and being
// moved is skipped, not an error. Thread-safe: one lock around every call.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cpu_control/cpu_weight.h"
#include "cpu_control/mechanism.h"
#include "malv/result.h"

namespace malv::cpu_control {

class GroupBackend;
class ThreadSettings;

struct CpuGroupOptions {
  std::string cgroup_root = "/sys/fs/cgroup";  // tests may point elsewhere
  // Use this mechanism or fail (kUnavailable, saying why): tests force the
  // fallback. Unset: the best that works.
  std::optional<Mechanism> force;
  // The host's group, a directory name; empty: "malv-<pid>".
  std::string group_name;
  // The CPUs VMs may be given (cpus()); empty: those the host process may
  // run on when opened. A host that confines its own threads to a few
  // cores (`malv serve --host-cpus`) passes the cores it had before.
  std::vector<int> cpus;
};

struct CpuUsage {
  // CPU time the group's threads used since it was made, exited threads
  // included (cgroups); under the fallback, the sum of schedstat over the
  // threads in the group now (exited threads' time drops out).
  std::int64_t cpu_time_ns = 0;
  // Time the threads in the group now spent waiting on a run queue since
  // each started (schedstat field 2): threads that left or exited drop out,
  // and a thread's wait from before it joined counts. Compare two readings
  // of the same threads.
  std::int64_t runqueue_delay_ns = 0;
  std::uint32_t threads = 0;  // in the group now
};

class CpuGroups {
 public:
  // Longest VM name: it becomes a directory name.
  static constexpr std::size_t kMaxVmNameBytes = 64;

  [[nodiscard]] static Result<std::unique_ptr<CpuGroups>> open(const CpuGroupOptions& options);
  // kInvalidArgument unless `vm` is 1..64 of [A-Za-z0-9._-], not starting
  // with '.' (so never "", "." or "..", never holding '/'); says which rule.
  [[nodiscard]] static Status validate_vm_name(std::string_view vm);

  ~CpuGroups();
  CpuGroups(const CpuGroups&) = delete;
  CpuGroups& operator=(const CpuGroups&) = delete;

  Mechanism mechanism() const;
  // One line for the log and /health: mechanism, where, what is missing and why.
  std::string describe() const;
  // The CPUs the host may use (its affinity when opened), sorted.
  std::vector<int> cpus() const;
  // The VMs with a group, sorted.
  std::vector<std::string> vms() const;

  // Makes the VM's group (weight 100, every host CPU). kAlreadyExists when
  // the VM has one (or its directory exists).
  [[nodiscard]] Status add_vm(std::string_view vm);
  // Moves every thread still in the group back and removes the group.
  // kNotFound for an unknown VM; on another error the VM stays, and may be
  // removed again.
  [[nodiscard]] Status remove_vm(std::string_view vm);
  // Moves every thread of process `pid` into the VM's group (and, under
  // cgroups, the threads it makes later). kNotFound when the process does
  // not exist; kInvalidArgument for the host's own process (its threads
  // join one by one) or for a thread id that is not a process.
  [[nodiscard]] Status attach_process(std::string_view vm, pid_t pid);
  // Moves one thread into the VM's group, out of any other. kNotFound when
  // it does not exist. cgroup v2 moves a single thread only within its
  // process's threaded domain (the host's cgroup): a thread of a process
  // elsewhere is refused with kFailedPrecondition, which says so; attach
  // its process.
  [[nodiscard]] Status attach_thread(std::string_view vm, pid_t tid);
  // Takes a thread out of whichever VM group has it, back to where it came
  // from. kNotFound when no VM group has it (or it has exited).
  [[nodiscard]] Status detach_thread(pid_t tid);
  // weight in [1, 10000], 100 the default (cpu_control/cpu_weight.h maps it
  // per mechanism). Under the fallback, a weight above 100 needs
  // CAP_SYS_NICE: without it the threads keep their nice value (logged).
  [[nodiscard]] Status set_weight(std::string_view vm, std::uint32_t weight);
  // The CPUs the group may run on, each one of cpus(); empty: all of them.
  [[nodiscard]] Status set_cpus(std::string_view vm, const std::vector<int>& cpus);
  [[nodiscard]] Result<CpuUsage> usage(std::string_view vm) const;
  // The threads in the VM's group now, sorted; empty for an unknown VM.
  std::vector<pid_t> threads(std::string_view vm) const;

 private:
  struct Vm {
    std::optional<std::uint32_t> weight;   // set by set_weight
    std::optional<std::vector<int>> cpus;  // set by set_cpus (empty: all)
  };

  CpuGroups(std::unique_ptr<GroupBackend> backend, std::vector<int> host_cpus);
  Result<Vm*> find_vm(std::string_view vm);
  // Gives `tids` the VM's nice value and CPUs where no cgroup does.
  Status apply_by_thread(const std::string& vm, const Vm& settings, const std::vector<pid_t>& tids);
  Status apply_nice(const std::string& vm, std::uint32_t weight, const std::vector<pid_t>& tids);
  Status apply_affinity(const std::string& vm, const std::vector<int>& cpus,
                        const std::vector<pid_t>& tids);
  Status remove_locked(const std::string& vm);

  mutable std::mutex mutex_;
  std::unique_ptr<GroupBackend> backend_;
  std::unique_ptr<ThreadSettings> settings_;
  const std::vector<int> host_cpus_;
  std::string description_;
  std::map<std::string, Vm, std::less<>> vms_;
};

}  // namespace malv::cpu_control
