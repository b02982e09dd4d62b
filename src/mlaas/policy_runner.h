// PolicyRunner: asks a VM's selected policy for decisions, under guardrails.
//
//   PolicyRunner runner(registry);
//   std::vector<malv_gpu_sched_decision> scores(items.size());
//   DecisionReport report = runner.decide("vm1", std::span(items), std::span(scores));
//   std::size_t next = lowest_score(std::span(scores));   // run items[next]
//   ...
//   runner.feedback("vm1", std::span(outcomes));
//
// Guardrails, for every decide() call on a module's policy:
//  * time budget: the call is timed (GuardrailOptions::budget, 50 us by
//    default, per batch); a late answer is discarded. A module cannot be
//    pre-empted, so lateness is detected, not prevented.
//  * deadline: start + budget is this thread's decision deadline while
//    decide() runs (decision_deadline.h): the host's inference service
//    answers the module's model_infer by then or fails it (the module then
//    returns an error).
//  * status: a non-zero return (or a C++ exception escaping the module) is
//    a failure.
//  * outputs: the decision buffer is poisoned first, so every decision must
//    be written (one per observation), finite and in range
//    (validate_decisions()).
// A failed call is answered by the class baseline for that call, so callers
// always get valid decisions. Failures are counted per (VM, module); after
// max_consecutive_failures in a row the module is switched off for that VM
// (the VM goes back to the baseline) with a log::warn. A success resets the
// run of failures.
//
// Thread-safety: any thread; decisions for one (VM, class) are serialised on
// the policy instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mlaas/policy_class.h"
#include "mlaas/policy_registry.h"

namespace malv::mlaas {

struct GuardrailOptions {
  std::chrono::nanoseconds budget = std::chrono::microseconds(50);
  std::uint32_t max_consecutive_failures = 5;
  // The memory class decides before a buffer is copied (a 6 MiB copy takes
  // about 500 us on PCIe 3.0), and a learned policy runs a model over every
  // candidate: its answers may take this long.
  std::chrono::nanoseconds memory_budget = std::chrono::milliseconds(1);
  // cpu_sched decides once per interval (50 ms by default) for every VM,
  // and a learned load balancer runs a model per candidate thread.
  std::chrono::nanoseconds cpu_sched_budget = std::chrono::milliseconds(2);
  // prefetch decides once every 8 batches of a data pipeline (milliseconds
  // apart), and a learned policy runs a model over every candidate depth.
  std::chrono::nanoseconds prefetch_budget = std::chrono::microseconds(500);

  // One budget for every class: for callers that check a policy's answers,
  // not its speed (tests on loaded or sanitized machines).
  static GuardrailOptions every_class(std::chrono::nanoseconds all,
                                      std::uint32_t max_failures = 5) {
    return {.budget = all,
            .max_consecutive_failures = max_failures,
            .memory_budget = all,
            .cpu_sched_budget = all,
            .prefetch_budget = all};
  }

  std::chrono::nanoseconds budget_for(PolicyClass cls) const {
    if (cls == PolicyClass::kMemory) return memory_budget;
    if (cls == PolicyClass::kCpuSched) return cpu_sched_budget;
    if (cls == PolicyClass::kPrefetch) return prefetch_budget;
    return budget;
  }
};

enum class DecisionSource {
  kPolicy,    // the VM's selected module policy decided
  kBaseline,  // the VM uses the baseline; it decided
  kFallback,  // the selected policy failed; the baseline decided this call
};

enum class FailureKind { kNone, kError, kLate, kInvalid };

std::string_view failure_kind_name(FailureKind kind);

struct DecisionReport {
  DecisionSource source = DecisionSource::kBaseline;
  FailureKind failure = FailureKind::kNone;
  std::string policy;           // qualified name of the policy asked first
  std::int64_t elapsed_ns = 0;  // time inside that policy's decide()
  bool disabled = false;        // this failure switched the module off for the VM
  std::string detail;           // why it failed, for logs
};

struct PolicyCounters {
  std::uint64_t decisions = 0;  // decide() calls on the module's policies
  std::uint64_t fallbacks = 0;  // of which the baseline answered instead
  std::uint64_t errors = 0;     // ... because decide() returned non-zero
  std::uint64_t late = 0;       // ... because it took longer than the budget
  std::uint64_t invalid = 0;    // ... because an output was missing or out of range
  std::uint64_t disables = 0;   // times the module was switched off for the VM
  std::uint64_t feedbacks = 0;  // feedback() calls
};

struct CounterRow {
  std::string vm;
  std::string module;
  PolicyCounters counters;
};

class PolicyRunner {
 public:
  explicit PolicyRunner(PolicyRegistry& registry, GuardrailOptions options = {});

  void set_options(const GuardrailOptions& options);
  GuardrailOptions options() const;

  // n observations of class cls in, n decisions out. Never fails: on any
  // failure of the selected policy, the baseline fills `decisions`.
  DecisionReport decide(std::string_view vm, PolicyClass cls, const void* observations,
                        std::size_t n, void* decisions);

  template <typename Observation>
  DecisionReport decide(std::string_view vm, std::span<const Observation> observations,
                        std::span<typename ClassOf<Observation>::Decision> decisions) {
    std::size_t n = std::min(observations.size(), decisions.size());
    return decide(vm, ClassOf<Observation>::value, observations.data(), n, decisions.data());
  }
  template <typename Observation>
  DecisionReport decide(std::string_view vm, std::span<Observation> observations,
                        std::span<typename ClassOf<Observation>::Decision> decisions) {
    return decide(vm, std::span<const Observation>(observations), decisions);
  }

  // What the VM's gpu_sched policy wants run for an item being queued (ABI
  // 6 enqueue_inputs): the model it names and its input row, written to
  // `row` (NaN past what the module wrote), and the serial of the instance
  // that asked. model 0 when there is nothing to run: the VM uses the
  // baseline, its policy has no enqueue_inputs, or the call declined or
  // failed (a C++ exception from the module counts as failing). Called
  // without the instance's lock, as the ABI allows; the instance stays
  // alive for the call.
  struct EnqueueInputs {
    std::uint64_t model = 0;
    std::uint64_t instance = 0;  // PolicyInstance::serial()
  };
  EnqueueInputs enqueue_inputs(std::string_view vm, const malv_gpu_sched_observation& item,
                               std::span<float> row);
  // Whether the VM's gpu_sched policy names models at enqueue (one lookup:
  // the queueing path asks it once per batch of commands, not per item).
  bool has_enqueue_inputs(std::string_view vm) const;
  // The serial of the instance deciding for the VM's gpu_sched class now
  // (an answer prepared for another instance is not passed on).
  std::uint64_t gpu_sched_instance(std::string_view vm) const;

  // Passes outcomes to the VM's current policy (if it takes feedback).
  void feedback(std::string_view vm, PolicyClass cls, const void* outcomes, std::size_t n);
  template <typename Outcome>
  void feedback(std::string_view vm, PolicyClass cls, std::span<const Outcome> outcomes) {
    feedback(vm, cls, outcomes.data(), outcomes.size());
  }
  void feedback(std::string_view vm, std::span<const malv_gpu_sched_outcome> outcomes) {
    feedback(vm, PolicyClass::kGpuSched, outcomes.data(), outcomes.size());
  }

  PolicyCounters counters(std::string_view vm, std::string_view module) const;
  std::vector<CounterRow> all_counters() const;

 private:
  struct Streak {
    const PolicyInstance* instance = nullptr;
    std::uint32_t failures = 0;
  };

  PolicyRegistry& registry_;
  mutable std::mutex mu_;
  GuardrailOptions options_;
  std::map<std::pair<std::string, std::string>, PolicyCounters, std::less<>> counters_;
  std::map<std::pair<std::string, PolicyClass>, Streak, std::less<>> streaks_;
};

// Index of the lowest score (ties: the lowest index); n must be >= 1.
std::size_t lowest_score(std::span<const malv_gpu_sched_decision> decisions);
// Index of the highest evict score (ties: the lowest index).
std::size_t highest_evict_score(std::span<const malv_memory_decision> decisions);

}  // namespace malv::mlaas
