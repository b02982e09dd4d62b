// malv_sched_basic: the built-in gpu_sched policies as one MLaaS module.
// Each orders one VM's own pending items (the heads of its streams); which
// VM is served is the host level's decision (vgpu/host_sched_policy.h).
//
//   fifo         score = enqueue_time_ns - the VM's oldest item: the VM's
//                work in the order it was queued
//   fair-share   score = queue_busy_ns: the VM's stream that has used the
//                least accelerator time goes first (the VM's streams share
//                its device time equally)
//   learned-sjf  see learned_sjf.h
//
// Lower scores run first; scores are >= 0 (ABI 5). Built against
// include/malv/mlaas.h only.
#include <malv/mlaas.h>

#include <cstdint>

#include "learned_sjf.h"

namespace malv_sched_basic {
namespace {

int create_stateless(const malv_host_services*, const char*, void** state) {
  *state = nullptr;
  return MALV_MLAAS_OK;
}
void destroy_stateless(void*) {}

int fifo_decide(void*, const void* observations, size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  std::int64_t oldest = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i == 0 || obs[i].enqueue_time_ns < oldest) oldest = obs[i].enqueue_time_ns;
  }
  for (size_t i = 0; i < n; ++i) {
    out[i].score = static_cast<double>(obs[i].enqueue_time_ns - oldest);
  }
  return MALV_MLAAS_OK;
}

int fair_share_decide(void*, const void* observations, size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  for (size_t i = 0; i < n; ++i) {
    if (obs[i].queue_busy_ns < 0) return MALV_MLAAS_ERR_INVALID;
    out[i].score = static_cast<double>(obs[i].queue_busy_ns);
  }
  return MALV_MLAAS_OK;
}

const malv_policy kPolicies[] = {
    {MALV_POLICY_GPU_SCHED, "fifo", "oldest work item first", create_stateless, destroy_stateless,
     fifo_decide, nullptr, nullptr},
    {MALV_POLICY_GPU_SCHED, "fair-share",
     "the VM's stream with the least accelerator time first (its streams share equally)",
     create_stateless, destroy_stateless, fair_share_decide, nullptr, nullptr},
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
