// CpuShareController: each VM's CPU share, decided by the VM's cpu_sched
// policy and applied through its control group (cpu_groups.h).
//
// The host tells the controller which processes and threads work for a VM:
// a guest process (found from the connection's SO_PEERCRED) and the host
// thread serving its session join with join(); the membership leaves when
// the returned token is dropped. A process the VM's config names (a real
// VM's hypervisor, VmCpuFacts::config_pid) is a member while configured. Every interval (50 ms by
// default, and at once after wake()) the controller, for each VM with members:
//
//  * on `builtin/none` (every VM's default): leaves the VM alone. A VM
//    that had a group (it selected a policy, then none) is taken out of it
//    and the group removed, so the host changes nothing unless asked to.
//  * otherwise: puts the VM's members in its group (created on first use),
//    reads what the group used in the interval (CPU time, run-queue delay)
//    and what the host knows of the VM (FactsSource: accelerator busy and
//    starved time, class, weight, pending latency requests), asks the VM's
//    policy through the PolicyRunner (guardrails: a failing, late or
//    out-of-range policy is answered by builtin/none for that call), and
//    applies the weight (capped at the VM's admin limit: a share is the
//    host's decision, a guest can only pick among allowed policies) and
//    the placement (dedicated cores, while the host has cores to give; or
//    balanced: the host places the VM's threads itself and the policy
//    decides which to move, thread_balancer.h).
//    The decision's outcome (what the next interval looked like under it)
//    goes back to the policy as feedback.
//
// A VM whose members all left is taken out at the next interval: its group
// is removed, nothing is left behind. The destructor removes every group.
//
// Thread-safety: join(), wake(), status() from any thread; the decisions
// run on the controller's own thread (or the caller's in run_interval()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cpu_control/cpu_groups.h"
#include "cpu_control/thread_balancer.h"
#include "malv/mlaas.h"
#include "mlaas/policy_registry.h"
#include "mlaas/policy_runner.h"

namespace malv::cpu_control {

// What the host knows of a VM besides its threads. Times are totals since
// the VM was created (the controller takes differences).
struct VmCpuFacts {
  std::uint64_t vm_id = 0;
  std::uint32_t priority_class = MALV_PRIORITY_BATCH;
  double vm_weight = 1.0;                            // compute weight, > 0
  std::uint32_t weight_limit = MALV_CPU_WEIGHT_MAX;  // the admin's cap on its CPU weight
  std::int64_t accel_busy_ns = 0;
  std::int64_t accel_starved_ns = 0;
  std::uint32_t pending_latency_requests = 0;
  pid_t config_pid = 0;  // a process the VM's config names (a hypervisor's); 0: none
};
// What the controller asks the host: the VMs there are, and each one's facts
// (nullopt when the VM is gone).
struct HostView {
  std::function<std::vector<std::string>()> vm_names;
  std::function<std::optional<VmCpuFacts>(std::string_view vm)> facts;
};

struct CpuControlOptions {
  std::chrono::milliseconds interval{50};
  CpuGroupOptions groups;
  bool start_thread = true;  // false: the caller drives run_interval() (tests)
  // Host threads that run batch kernels (the CPU backend's general workers:
  // accel::Backend::batch_worker_threads). While a core is dedicated to a
  // VM they may run only on the shared cores, so that a latency VM's core
  // is its own; otherwise, and when the controller stops, on every core.
  std::vector<pid_t> batch_worker_threads;
  // The cores those workers run on when no core is dedicated, and the
  // first they keep when some are (empty: every core of the groups). A
  // host confined to a few cores (`malv serve --host-cpus`) names them, so
  // that placing the workers never spreads them over the VMs' cores.
  std::vector<int> batch_worker_home;
};

// One VM as the controller sees it (admin API, /metrics).
struct VmCpuStatus {
  std::string vm;
  std::string policy;                        // the selected cpu_sched policy
  bool managed = false;                      // in a control group now
  std::uint32_t weight = 0;                  // in force (0: not managed)
  std::uint32_t placement = 0;               // malv_cpu_placement in force
  std::vector<int> cpus;                     // cores it may run on (empty: not managed)
  std::uint32_t threads = 0;                 // threads in its group
  std::uint32_t members = 0;                 // processes and host threads that joined
  std::int64_t cpu_time_ns = 0;              // in the last interval
  std::int64_t runqueue_delay_ns = 0;        // in the last interval
  std::int64_t accel_starved_ns = 0;         // in the last interval
  std::uint64_t decisions = 0;               // share decisions applied
  std::int64_t cpu_time_total_ns = 0;        // while managed, all intervals
  std::int64_t runqueue_delay_total_ns = 0;  // while managed, all intervals
};

class CpuShareController {
 public:
  [[nodiscard]] static Result<std::unique_ptr<CpuShareController>> start(
      mlaas::PolicyRegistry& registry, mlaas::PolicyRunner& runner, HostView host,
      CpuControlOptions options = {});
  ~CpuShareController();
  CpuShareController(const CpuShareController&) = delete;
  CpuShareController& operator=(const CpuShareController&) = delete;

  // A guest process (0: none) and a host thread (0: none) work for `vm`
  // from now until the returned token is dropped (any thread).
  [[nodiscard]] std::shared_ptr<void> join(const std::string& vm, pid_t guest_pid, pid_t host_tid);
  // Decide at once instead of at the end of the interval (an event: a
  // policy switch, a latency VM's session starting).
  void wake();
  // One interval's work on the calling thread (what the thread runs).
  void run_interval();

  std::vector<VmCpuStatus> status() const;
  std::optional<VmCpuStatus> status(std::string_view vm) const;
  // Prometheus families of every VM the controller knows (malv_vm_cpu_*).
  std::string metrics_text() const;
  // The mechanism in use and why (cpu_groups.h), for the log and /health.
  std::string mechanism() const;
  BalancerStats balancer_stats() const;
  // The cores the batch worker threads may run on now (every core while
  // none is dedicated; empty when there are no such threads).
  std::vector<int> batch_worker_cpus() const;

 private:
  struct Member {
    pid_t guest_pid = 0;
    pid_t host_tid = 0;
  };
  struct VmState {
    std::map<std::uint64_t, Member> members;  // by token id
    pid_t config_pid = 0;                     // attached while managed
    bool managed = false;
    std::uint32_t weight = 0;
    std::uint32_t placement = MALV_CPU_PLACE_ANY;
    std::vector<int> cpus;
    bool balanced = false;         // its threads are placed by balancer_
    std::set<pid_t> short_slices;  // its threads given a short time slice
    std::int64_t last_sample_ns = 0;
    CpuUsage last_usage{};
    VmCpuFacts last_facts{};
    VmCpuStatus status;
    // The decision in force and the observation it was made on, for the
    // feedback one interval later.
    std::optional<malv_cpu_sched_outcome> pending_outcome;
  };

  CpuShareController(mlaas::PolicyRegistry& registry, mlaas::PolicyRunner& runner, HostView host,
                     CpuControlOptions options);
  void leave(const std::string& vm, std::uint64_t token);
  void loop();
  // (mu_ held) Puts the VM in its group with every member; false (logged)
  // when the group cannot be made.
  bool manage(const std::string& vm, VmState& state);
  void unmanage(const std::string& vm, VmState& state);
  // (mu_ held) A latency-class VM its policy favours (weight above the
  // default) also wakes straight onto a core: EEVDF's short time slice on
  // each of its threads; otherwise they get the kernel's default back.
  void set_slices(const std::string& vm, VmState& state, bool quick);
  // Every thread of the process back to the host's group.
  void detach_process(pid_t pid);
  void decide_share(const std::string& vm, VmState& state, std::int64_t now);
  // (mu_ held) Gives dedicated cores to the VMs that asked, while at least
  // one core is left for the others, and sets every managed VM's cores.
  void place_all();
  // (mu_ held) The batch worker threads onto `cpus` (a change only).
  // The cores the batch workers may use while `shared` are not dedicated
  // ({}: none is): their home's cores among them.
  std::vector<int> worker_cores(const std::vector<int>& shared) const;
  void place_batch_workers(const std::vector<int>& cpus);
  // (mu_ held) One pass of the host's own thread placement over the VMs on
  // MALV_CPU_PLACE_BALANCED; VMs that left it get their cores back.
  void balance_threads();

  mlaas::PolicyRegistry& registry_;
  mlaas::PolicyRunner& runner_;
  HostView host_;
  CpuControlOptions options_;
  std::unique_ptr<CpuGroups> groups_;
  ThreadBalancer balancer_;

  mutable std::mutex mu_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::uint64_t next_token_ = 1;
  std::map<std::string, VmState, std::less<>> vms_;
  std::vector<int> batch_worker_cpus_;  // where the batch workers may run now
  std::thread thread_;
};

}  // namespace malv::cpu_control
