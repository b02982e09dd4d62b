// GpuSchedPolicies: how the vGPU scheduler asks a VM's selected
// gpu_sched policy (an MLaaS module) to score its pending work.
//
// Scores from all VMs are compared directly and the lowest runs first, so
// policies share one scale (see docs/mlaas-abi.md). The MLaaS subsystem
// implements this with guardrails (time budget, output checks, fallback to
// the baseline); tests may implement it directly.
#pragma once

#include <span>

#include "malv/mlaas.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

class GpuSchedPolicies {
 public:
  virtual ~GpuSchedPolicies() = default;
  // Fills scores[i] for items[i]; every item belongs to `vm`. Never fails:
  // an implementation falls back to a baseline itself.
  virtual void score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
                     std::span<double> scores) = 0;
  // What happened to an item the scheduler ran.
  virtual void feedback(Vm& vm, const malv_gpu_sched_outcome& outcome) = 0;
};

// Scores by enqueue time: first come, first served across all VMs.
class FifoPolicies final : public GpuSchedPolicies {
 public:
  void score(Vm&, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override {
    for (std::size_t i = 0; i < items.size(); ++i) {
      scores[i] = static_cast<double>(items[i].enqueue_time_ns);
    }
  }
  void feedback(Vm&, const malv_gpu_sched_outcome&) override {}
};

}  // namespace malv::vgpu
