// ThreadSettings: nice values and affinity masks set on single threads,
// and what each thread had before, so it can be put back.
//
// CpuGroups uses it where no cgroup does the work: for weights and
// placement under the thread fallback, and for placement under a cgroup
// layout without cpuset. The first change to a thread saves what it had;
// restore() puts that back and forgets the thread. A thread the process
// made after its group was set up inherited the changed values from the
// thread that made it, so it gets back what the process's first thread
// had. Threads are known by id and start time: a reused id is not
// mistaken for the thread that had it.
//
// Without CAP_SYS_NICE Linux lets a thread's nice value only go up, so an
// unprivileged host can lower VMs' priority but not raise it, nor undo a
// lowering; set_nice says kPermissionDenied and restore() logs it.
//
// Not thread-safe: CpuGroups holds its lock around every call.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "malv/result.h"

namespace malv::cpu_control {

class ThreadSettings {
 public:
  // Sets `tid`'s nice value on behalf of `vm`; false when the thread is gone.
  [[nodiscard]] Result<bool> set_nice(pid_t tid, std::string_view vm, int nice);
  // Lets `tid` run on `cpus` only; false when the thread is gone.
  [[nodiscard]] Result<bool> set_affinity(pid_t tid, std::string_view vm,
                                          const std::vector<int>& cpus);
  // Says that process `pid` joined `vm` whole: a thread it makes later
  // inherits changed values, and gets back what `pid`'s first thread had.
  void note_process(pid_t pid, std::string_view vm);
  // Puts back what `tid` (or its process's first thread) had; forgets it.
  void restore(pid_t tid);
  // restore() when what `tid` has now was set for a VM other than `vm`
  // (a thread moving from one VM to another).
  void restore_if_elsewhere(pid_t tid, std::string_view vm);
  // restore() of every thread changed for `vm` and of `threads`.
  void restore_vm(std::string_view vm, const std::vector<pid_t>& threads);

  // The nice value and CPUs `tid` had before its first change, if changed.
  std::optional<int> saved_nice(pid_t tid) const;
  std::optional<std::vector<int>> saved_affinity(pid_t tid) const;

 private:
  struct Saved {
    std::string vm;
    std::uint64_t start_time = 0;
    std::optional<int> nice;
    std::optional<std::vector<int>> affinity;
    bool whole_process = false;  // a process's first thread, the process joined whole
  };

  // The record of `tid`, made on first use; nullptr when the thread is gone.
  Saved* record(pid_t tid, std::string_view vm);
  // The record of the whole process `tid` belongs to, if any.
  const Saved* process_record(pid_t tid) const;
  // What to put back on `tid`: its own record, else its process's.
  const Saved* saved_for(pid_t tid) const;
  static void put_back(pid_t tid, const Saved& saved);

  std::map<pid_t, Saved> saved_;
};

}  // namespace malv::cpu_control
