// MlaasGpuSchedPolicies: the vGPU scheduler's policy source, backed by the
// MLaaS subsystem. Each VM's gpu_sched decision goes through the
// PolicyRunner, which calls the VM's selected module under the guardrails
// (time budget, output checks, fallback to the fifo baseline) and counts
// what happened; fallbacks are also counted on the VM for stats and metrics.
#pragma once

#include "mlaas/policy_runner.h"
#include "vgpu/gpu_sched_policies.h"

namespace malv::vgpu {

class MlaasGpuSchedPolicies final : public GpuSchedPolicies {
 public:
  explicit MlaasGpuSchedPolicies(mlaas::PolicyRunner& runner) : runner_(runner) {}

  void score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override;
  void feedback(Vm& vm, const malv_gpu_sched_outcome& outcome) override;

 private:
  mlaas::PolicyRunner& runner_;
};

}  // namespace malv::vgpu
