// GpuSchedPolicies: how the vGPU scheduler asks a VM's selected
// gpu_sched policy (an MLaaS module) to score its pending work.
//
// A VM's scores order that VM's own items only (the lowest runs first);
// which VM is served is the scheduler's host level (host_sched_policy.h),
// so scores of different VMs are never compared. The MLaaS subsystem
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

// Scores by enqueue time: each VM's items in the order they were queued.
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
