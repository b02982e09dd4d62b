// DemoRecord: what `malv demo` observes while it runs — the VMs it created,
// their latest state, a sample of every VM once per tick, the policy
// switches — and the per-phase summary computed from it. The live table,
// the console summary and both report files read this one structure.
//
// Times are seconds since the run started (every guest running), t = 0.
// A phase runs from its policy switch (or t = 0) to the next switch (or the
// end); its figures come from counters at its two ends, not from averaging
// samples, so a phase's throughput is exact however the ticks fell.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace malv::demo {

enum class VmRole { kTrain, kInfer };

struct DemoVmSpec {
  std::string name;
  VmRole role = VmRole::kTrain;
  std::string priority;  // latency | batch
  double weight = 1.0;
  std::uint64_t memory_quota = 0;  // bytes
  std::int64_t batch = 0;          // examples per step (train) or request (infer)
  // Above memory_quota: oversubscribed, the host's memory manager holds the
  // rest (borrowed while the device has room, else spilled); 0: not.
  std::uint64_t virtual_memory = 0;
};

// The latest state of one VM: from its guest's output and the host's stats.
struct VmLive {
  std::string state = "starting";  // starting, running, finished, stopped, failed
  std::string policy;              // gpu_sched, as the host reports it
  // Training guests.
  std::uint64_t epoch = 0;
  std::uint64_t step = 0;
  std::uint64_t total_steps = 0;
  double loss = 0;
  double guest_elapsed_s = 0;  // the guest's clock at its latest progress line
  double test_accuracy = -1;   // when it finished
  double finished_at_s = -1;   // t it finished its budget at, if it did
  // The inference guest.
  std::uint64_t requests = 0;
  double request_rate = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double accuracy = 0;
  // Both.
  double examples_per_s = 0;  // over the latest tick
  std::uint64_t examples = 0;
  // The host's view.
  double busy_s = 0;
  double share = 0;  // of the accelerator time all VMs used over the latest tick
  std::uint64_t memory_used = 0;
  std::uint64_t memory_limit = 0;
  // The memory manager's (oversubscribed VMs): held above the quota, lent;
  // in host memory; filled back since the start.
  std::uint64_t borrowed_bytes = 0;
  std::uint64_t spilled_bytes = 0;
  std::uint64_t bytes_in = 0;
};

struct VmSample {
  std::string policy;
  double examples_per_s = 0;
  std::uint64_t examples = 0;
  double share = 0;
  double busy_s = 0;
  std::uint64_t memory_used = 0;
  double loss = 0;
  double p50_ms = 0;  // inference VM only
  double p99_ms = 0;
};

struct Tick {
  double t = 0;
  double utilisation = 0;     // accelerator busy time / (tick x device slots)
  std::vector<VmSample> vms;  // in DemoRecord::vms order
};

struct PolicySwitch {
  double t = 0;
  std::string host_policy;                      // the scheduler's host level from then on
  std::map<std::string, std::string> policies;  // VM -> its gpu_sched policy from then on
};

struct PhaseVmSummary {
  double examples_per_s = 0;
  double share = 0;  // of all VMs' accelerator time in the phase
  std::uint64_t requests = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
};

struct PhaseSummary {
  std::string label;  // the host level: "fifo", "priority"
  double start_s = 0;
  double end_s = 0;
  std::vector<PhaseVmSummary> vms;  // in DemoRecord::vms order
};

struct DemoRecord {
  std::string backend;
  std::string device;
  double planned_duration_s = 0;
  double startup_s = 0;             // demo start -> every guest running
  double run_s = 0;                 // t of the last tick
  std::string initial_policy;       // the VMs' own gpu_sched policy at the start
  std::string initial_host_policy;  // the scheduler's host level at the start
  nlohmann::json inference_model;   // how its checkpoint was made
  std::vector<DemoVmSpec> vms;
  std::vector<VmLive> live;
  std::vector<Tick> ticks;
  std::vector<PolicySwitch> switches;
  // Every inference latency with the t its report arrived at.
  std::vector<std::pair<double, double>> infer_latencies_ms;

  // Phases delimited by the switches, with each VM's figures in each.
  std::vector<PhaseSummary> phases() const;
};

// "malv_sched_basic/priority" -> "priority".
std::string short_policy_name(const std::string& qualified);

}  // namespace malv::demo
