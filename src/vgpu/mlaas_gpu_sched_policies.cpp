#include "vgpu/mlaas_gpu_sched_policies.h"

#include <vector>

namespace malv::vgpu {

void MlaasGpuSchedPolicies::score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
                                  std::span<double> scores) {
  // Called under the scheduler's lock, from one thread at a time.
  thread_local std::vector<malv_gpu_sched_decision> decisions;
  decisions.assign(items.size(), malv_gpu_sched_decision{});
  const mlaas::DecisionReport report =
      runner_.decide(vm.name(), items, std::span<malv_gpu_sched_decision>(decisions));
  if (report.source == mlaas::DecisionSource::kFallback) {
    vm.counters().fallbacks.fetch_add(1, std::memory_order_relaxed);
  }
  for (std::size_t i = 0; i < items.size(); ++i) scores[i] = decisions[i].score;
}

void MlaasGpuSchedPolicies::feedback(Vm& vm, const malv_gpu_sched_outcome& outcome) {
  runner_.feedback(vm.name(), std::span(&outcome, 1));
}

}  // namespace malv::vgpu
