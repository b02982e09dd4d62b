// PolicyClass: the C ABI's policy classes as a C++ enum, with what the host
// needs to handle each class generically: names, struct sizes, and the
// validation of a policy's decisions.
//
//   PolicyClass cls = parse_policy_class("gpu_sched").value();
//   std::string_view name = policy_class_name(cls);  // "gpu_sched"
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "malv/mlaas.h"
#include "malv/result.h"

namespace malv::mlaas {

enum class PolicyClass : std::uint32_t {
  kGpuSched = MALV_POLICY_GPU_SCHED,
  kMemory = MALV_POLICY_MEMORY,
  kCpuSched = MALV_POLICY_CPU_SCHED,
  kPrefetch = MALV_POLICY_PREFETCH,
};

inline constexpr PolicyClass kAllPolicyClasses[] = {PolicyClass::kGpuSched, PolicyClass::kMemory,
                                                    PolicyClass::kCpuSched, PolicyClass::kPrefetch};

// "gpu_sched", "memory", "cpu_sched", "prefetch".
std::string_view policy_class_name(PolicyClass cls);
Result<PolicyClass> parse_policy_class(std::string_view name);
// The C value, if it names a class.
std::optional<PolicyClass> policy_class_from_abi(std::uint32_t value);

// Sizes of one observation / decision / outcome struct of the class.
std::size_t observation_size(PolicyClass cls);
std::size_t decision_size(PolicyClass cls);
std::size_t outcome_size(PolicyClass cls);

// Fills decisions with a value no valid decision has, so entries a policy
// leaves unwritten are caught by validate_decisions().
void poison_decisions(PolicyClass cls, void* decisions, std::size_t n);

// Checks n decisions against their observations: scores finite and within
// MALV_MLAAS_SCORE_LIMIT, prefetch depth within [0, max_depth]. The error
// names the first bad index and value.
Status validate_decisions(PolicyClass cls, const void* observations, const void* decisions,
                          std::size_t n);

// Maps a C++ observation type to its class, for the typed helpers.
template <typename Observation>
struct ClassOf;
template <>
struct ClassOf<malv_gpu_sched_observation> {
  static constexpr PolicyClass value = PolicyClass::kGpuSched;
  using Decision = malv_gpu_sched_decision;
  using Outcome = malv_gpu_sched_outcome;
};
template <>
struct ClassOf<malv_memory_observation> {
  static constexpr PolicyClass value = PolicyClass::kMemory;
  using Decision = malv_memory_decision;
  using Outcome = malv_memory_outcome;
};
template <>
struct ClassOf<malv_cpu_sched_observation> {
  static constexpr PolicyClass value = PolicyClass::kCpuSched;
  using Decision = malv_cpu_sched_decision;
  using Outcome = malv_cpu_sched_outcome;
};
template <>
struct ClassOf<malv_prefetch_observation> {
  static constexpr PolicyClass value = PolicyClass::kPrefetch;
  using Decision = malv_prefetch_decision;
  using Outcome = malv_prefetch_outcome;
};

}  // namespace malv::mlaas
