#include "vgpu/mlaas_memory_policies.h"

#include <vector>

namespace malv::vgpu {

bool MlaasMemoryPolicies::score(std::string_view vm,
                                std::span<const malv_memory_observation> candidates,
                                std::span<double> scores) {
  const std::size_t n = std::min(candidates.size(), scores.size());
  if (n == 0) return false;  // a policy is only ever asked about n >= 1
  // One buffer per calling thread: concurrent callers (different VMs) never
  // share it, and a thread that evicts often does not allocate each time.
  thread_local std::vector<malv_memory_decision> decisions;
  decisions.assign(n, malv_memory_decision{});
  const mlaas::DecisionReport report =
      runner_.decide(vm, candidates.first(n), std::span<malv_memory_decision>(decisions.data(), n));
  for (std::size_t i = 0; i < n; ++i) scores[i] = decisions[i].evict_score;
  return report.source == mlaas::DecisionSource::kFallback;
}

void MlaasMemoryPolicies::feedback(std::string_view vm, const malv_memory_outcome& outcome) {
  runner_.feedback(vm, mlaas::PolicyClass::kMemory, &outcome, 1);
}

}  // namespace malv::vgpu
