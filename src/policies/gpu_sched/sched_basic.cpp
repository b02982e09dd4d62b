// malv_sched_basic: the built-in gpu_sched policies as one MLaaS module.
//
//   fifo         score = enqueue_time_ns
//   fair-share   score = vm_busy_ns / vm_weight: the VM that has used the
//                least accelerator time per unit of weight goes first
//   priority     latency items by enqueue time, marked urgent (score less
//                MALV_GPU_SCHED_URGENT_OFFSET: the host runs them on the
//                device's highest priority); batch items come after
//                every latency item (scored from the decision time plus
//                kBatchPenaltyNs) and share among themselves like
//                fair-share, by busy time per unit of weight; a batch item
//                that waited kAgingNs or more competes by enqueue time like
//                a latency item (urgent too, and, being older, usually
//                wins): batch work is never starved
//   learned-sjf  see learned_sjf.h
//
// Lower scores run first. Built against include/malv/mlaas.h only.
#include <malv/mlaas.h>

#include <cstdint>

#include "learned_sjf.h"

namespace malv_sched_basic {
namespace {

constexpr double kBatchPenaltyNs = 1e9;        // 1 s behind any latency item
constexpr std::int64_t kAgingNs = 20'000'000;  // 20 ms

int create_stateless(const malv_host_services*, const char*, void** state) {
  *state = nullptr;
  return MALV_MLAAS_OK;
}
void destroy_stateless(void*) {}

int fifo_decide(void*, const void* observations, size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  for (size_t i = 0; i < n; ++i) out[i].score = static_cast<double>(obs[i].enqueue_time_ns);
  return MALV_MLAAS_OK;
}

int fair_share_decide(void*, const void* observations, size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  for (size_t i = 0; i < n; ++i) {
    if (!(obs[i].vm_weight > 0.0)) return MALV_MLAAS_ERR_INVALID;
    out[i].score = static_cast<double>(obs[i].vm_busy_ns) / obs[i].vm_weight;
  }
  return MALV_MLAAS_OK;
}

int priority_decide(void*, const void* observations, size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  for (size_t i = 0; i < n; ++i) {
    double score = static_cast<double>(obs[i].enqueue_time_ns) - MALV_GPU_SCHED_URGENT_OFFSET;
    const bool batch = obs[i].priority_class == MALV_PRIORITY_BATCH;
    if (batch && obs[i].waited_ns < kAgingNs) {
      if (!(obs[i].vm_weight > 0.0)) return MALV_MLAAS_ERR_INVALID;
      // enqueue + waited is the decision time, the same for every candidate
      // of a decision: batch items differ only by their VM's share used.
      const double now = static_cast<double>(obs[i].enqueue_time_ns + obs[i].waited_ns);
      score = now + kBatchPenaltyNs + static_cast<double>(obs[i].vm_busy_ns) / obs[i].vm_weight;
    }
    out[i].score = score;
  }
  return MALV_MLAAS_OK;
}

const malv_policy kPolicies[] = {
    {MALV_POLICY_GPU_SCHED, "fifo", "oldest work item first", create_stateless, destroy_stateless,
     fifo_decide, nullptr},
    {MALV_POLICY_GPU_SCHED, "fair-share",
     "VM with the least accelerator time per unit of weight first", create_stateless,
     destroy_stateless, fair_share_decide, nullptr},
    {MALV_POLICY_GPU_SCHED, "priority",
     "latency class first; batch VMs share by weight; batch items promoted after 20 ms",
     create_stateless, destroy_stateless, priority_decide, nullptr},
    kLearnedSjfPolicy,
};

// kPolicies copies kLearnedSjfPolicy (constant-initialised in its own file)
// when the module is loaded, before the host can call the entry point.
const malv_mlaas_module kModule = {
    MALV_MLAAS_ABI_VERSION, static_cast<std::uint32_t>(sizeof(kPolicies) / sizeof(kPolicies[0])),
    "malv_sched_basic", "1.0.0", kPolicies};

}  // namespace
}  // namespace malv_sched_basic

extern "C" MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) {
  return &malv_sched_basic::kModule;
}
