// MlaasGpuSchedPolicies: the vGPU scheduler's policy source, backed by the
// MLaaS subsystem. Each VM's gpu_sched decision goes through the
// PolicyRunner, which calls the VM's selected module under the guardrails
// (time budget, output checks, fallback to the fifo baseline) and counts
// what happened; fallbacks are also counted on the VM for stats and metrics.
//
// Scoring at enqueue (ABI 6): with an InferenceService and an
// AsyncInference queue, prepare() asks the VM's policy which model to run
// for each item being queued (enqueue_inputs) and submits the rows to the
// queue, which batches them with every other VM's rows for that model and
// runs them off the scheduler's lock; the decision then reads the answers
// (observation.model_output) instead of running the model under the lock.
// A row the policy writes is checked first: a model the service does not
// hold, an input dimension past MALV_ENQUEUE_INPUTS_MAX or a value that is
// not finite start nothing (counted as refused). Whether answers were
// ready by the decision is the scheduler's count (SchedulerStats).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "mlaas/async_inference.h"
#include "mlaas/inference_service.h"
#include "mlaas/policy_runner.h"
#include "vgpu/gpu_sched_policies.h"

namespace malv::vgpu {

// The queue's options for scoring at enqueue: no batching thread. Every
// decision is preceded by its dispatcher running what is pending
// (run_prepared), so rows wait for the next decision, where the rows of
// every VM queued since the last one run as one batch; a thread woken per
// submission competed for the CPU with the device's own workers on a small
// host (learned_sjf_cold_over_fifo about 0.66 with it, 0.55 without, in
// `malv bench mlaas --sjf-only` on 2 vCPUs).
inline constexpr mlaas::AsyncInferenceOptions kEnqueueScoringQueue{.batching_thread = false};

struct PredictionCounters {
  std::uint64_t submitted = 0;  // items whose row went to the queue
  std::uint64_t refused = 0;    // rows refused (see above) or not taken by the queue
};

class MlaasGpuSchedPolicies final : public GpuSchedPolicies {
 public:
  explicit MlaasGpuSchedPolicies(mlaas::PolicyRunner& runner,
                                 mlaas::InferenceService* inference = nullptr,
                                 mlaas::AsyncInference* queue = nullptr)
      : runner_(runner), inference_(inference), queue_(queue) {}

  void score(Vm& vm, std::span<const malv_gpu_sched_observation> items,
             std::span<double> scores) override;
  void feedback(Vm& vm, const malv_gpu_sched_outcome& outcome) override;
  void prepare(Vm& vm, std::span<const malv_gpu_sched_observation> items,
               std::span<PreparedItem> prepared) override;
  void run_prepared() override;
  double prepared_output(Vm& vm, const PreparedItem& item) override;
  bool prepares() const override { return queue_ != nullptr && inference_ != nullptr; }

  PredictionCounters predictions() const;
  // /metrics families over predictions().
  std::string metrics_text() const;

 private:
  mlaas::PolicyRunner& runner_;
  mlaas::InferenceService* inference_;
  mlaas::AsyncInference* queue_;
  std::atomic<std::uint64_t> submitted_{0}, refused_{0};
};

}  // namespace malv::vgpu
