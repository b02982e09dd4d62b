// GpuSchedPolicies: how the vGPU scheduler asks a VM's selected
// gpu_sched policy (an MLaaS module) to score its pending work.
//
// A VM's scores order that VM's own items only (the lowest runs first);
// which VM is served is the scheduler's host level (host_sched_policy.h),
// so scores of different VMs are never compared. The MLaaS subsystem
// implements this with guardrails (time budget, output checks, fallback to
// the baseline); tests may implement it directly.
//
// Work ahead of the decision (ABI 6): prepare() is called as items are
// queued, outside the scheduler's lock, and may start an inference for each
// (batched across VMs by mlaas::AsyncInference); the scheduler keeps the
// PreparedItem with the item and passes its answer, when ready, to the
// decision in observation.model_output. Nothing waits for it: an answer
// not ready by the decision is NaN there.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "malv/mlaas.h"
#include "mlaas/async_inference.h"
#include "vgpu/vm_registry.h"

namespace malv::vgpu {

// An item's answer started by prepare(): row `row` of a ticket.
struct PreparedItem {
  mlaas::InferenceTicket ticket;
  std::size_t row = 0;
  std::uint64_t source = 0;  // who asked for it (the policy source's own tag)

  bool started() const { return ticket.valid(); }
  bool ready() const { return ticket.valid() && ticket.ready(); }
  // The row's first output once answered; NaN before, on failure or when
  // nothing was started.
  double output() const {
    if (!ready() || !ticket.status().ok()) return std::numeric_limits<double>::quiet_NaN();
    const std::span<const float> out = ticket.output();
    const std::size_t per_row = ticket.rows() == 0 ? 0 : out.size() / ticket.rows();
    if (per_row == 0 || row >= ticket.rows()) return std::numeric_limits<double>::quiet_NaN();
    return out[row * per_row];
  }
};

class GpuSchedPolicies {
 public:
  virtual ~GpuSchedPolicies() = default;
  // Fills scores[i] for items[i]; every item belongs to `vm`. Never fails:
  // an implementation falls back to a baseline itself.
  virtual void score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
                     std::span<double> scores) = 0;
  // What happened to an item the scheduler ran.
  virtual void feedback(Vm& vm, const malv_gpu_sched_outcome& outcome) = 0;
  // Items being queued on `vm`'s streams (not under the scheduler's lock):
  // prepared[i] gets what was started for items[i]. Default: nothing.
  virtual void prepare(Vm&, std::span<const malv_gpu_sched_observation>, std::span<PreparedItem>) {}
  // Runs the prepared work still pending on the calling thread (a
  // dispatcher about to decide, before it takes the scheduler's lock), so
  // that its decision reads answers instead of missing them. Default:
  // nothing.
  virtual void run_prepared() {}
  // The answer to pass to the decision for a prepared item: NaN when it is
  // not ready, failed, or was prepared for a policy the VM no longer uses.
  // Under the scheduler's lock.
  virtual double prepared_output(Vm&, const PreparedItem& item) { return item.output(); }
  // Whether prepare() may start anything (false: the scheduler skips it).
  virtual bool prepares() const { return false; }
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
