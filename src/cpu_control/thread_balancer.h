// ThreadBalancer: the host's own placement of the threads of VMs whose
// cpu_sched policy asked for MALV_CPU_PLACE_BALANCED (the MLLB policy).
//
// Each such thread is pinned to one core of its VM's cores (a new thread
// to the least loaded one). Every pass (one per controller interval) the
// balancer counts, per core, the balanced threads that are runnable there
// (/proc state R); when the busiest core has at least two more than the
// idlest, every runnable thread on the busiest core is a candidate, and
// each candidate's VM policy is asked, in one decide() call per VM with
// MALV_CPU_SCHED_MIGRATE observations, whether to move it to the idlest
// core (the question Linux's can_migrate_task() answers). Up to half the
// imbalance is moved (sched_setaffinity). A policy that answers
// MALV_CPU_MIGRATE_DEFAULT gets the kernel's own rule: never a running
// thread; a cache-hot one (started running less than 0.5 ms ago) only once
// the failed attempts in a row exceed cache_nice_tries.
//
// What the observation carries is what the host can know of its threads:
// since_ran_ns from /proc/<tid>/sched's se.exec_start (the scheduler's
// clock; -1 when the kernel does not show it and the thread has not run
// while watched), `running` estimated as runnable and started within the
// last scheduler slice (procfs cannot tell running from waiting), the idle
// type of the destination from its runnable count now and at the last
// pass, one NUMA node unless sysfs says otherwise, no NUMA faults (procfs
// does not show them per thread without NUMA balancing's debug files).
//
// Thread-safety: one thread (the controller's, under its lock).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mlaas/policy_runner.h"

namespace malv::cpu_control {

// A VM on balanced placement, as the controller sees it this pass.
struct BalancedVm {
  std::string name;
  std::uint64_t vm_id = 0;
  std::uint32_t priority_class = 0;
  std::vector<pid_t> threads;  // its threads now
  std::vector<int> cpus;       // the cores it may use
};

struct BalancerStats {
  std::uint64_t passes = 0;
  std::uint64_t imbalanced_passes = 0;  // passes that asked about moves
  std::uint64_t candidates = 0;         // migration observations asked
  std::uint64_t migrations = 0;         // threads moved
  std::uint64_t kernel_rule = 0;        // answers left to the kernel's rule
};

class ThreadBalancer {
 public:
  explicit ThreadBalancer(mlaas::PolicyRunner& runner) : runner_(runner) {}

  // One pass over every VM on balanced placement (all of them at once:
  // they share the cores).
  void balance(const std::vector<BalancedVm>& vms);
  // The VM's threads are no longer placed by the balancer: each may run
  // on any of `cpus` again (empty: leave its affinity as it is).
  void release(const std::string& vm, const std::vector<int>& cpus);

  BalancerStats stats() const { return stats_; }

 private:
  struct Placed {
    std::string vm;
    int cpu = -1;
  };

  mlaas::PolicyRunner& runner_;
  std::map<pid_t, Placed> placed_;          // by tid
  std::map<int, std::uint32_t> last_load_;  // runnable balanced threads per core, last pass
  std::uint32_t nr_fails_ = 0;              // imbalanced passes in a row that moved nothing
  BalancerStats stats_;
};

}  // namespace malv::cpu_control
