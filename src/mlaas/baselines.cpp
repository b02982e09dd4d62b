// The built-in baselines (see baselines.h for what each one does).
#include "mlaas/baselines.h"

#include <algorithm>

namespace malv::mlaas {
namespace {

int create_stateless(const malv_host_services*, const char*, void** state) {
  *state = nullptr;
  return MALV_MLAAS_OK;
}
void destroy_stateless(void*) {}

int gpu_fifo(void*, const void* observations, std::size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_gpu_sched_observation*>(observations);
  auto* out = static_cast<malv_gpu_sched_decision*>(decisions);
  for (std::size_t i = 0; i < n; ++i) out[i].score = static_cast<double>(obs[i].enqueue_time_ns);
  return MALV_MLAAS_OK;
}

int memory_lru(void*, const void* observations, std::size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_memory_observation*>(observations);
  auto* out = static_cast<malv_memory_decision*>(decisions);
  // Only the v1 fields: the baseline must not depend on what the host fills
  // in for lookahead. Clamped, like every score, to the ABI's limit.
  for (std::size_t i = 0; i < n; ++i) {
    out[i].evict_score = std::clamp(static_cast<double>(obs[i].age_ns), -MALV_MLAAS_SCORE_LIMIT,
                                    MALV_MLAAS_SCORE_LIMIT);
  }
  return MALV_MLAAS_OK;
}

int prefetch_fixed(void*, const void* observations, std::size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_prefetch_observation*>(observations);
  auto* out = static_cast<malv_prefetch_decision*>(decisions);
  for (std::size_t i = 0; i < n; ++i)
    out[i].depth = std::min(kBaselinePrefetchDepth, obs[i].max_depth);
  return MALV_MLAAS_OK;
}

int cpu_none(void*, const void* observations, std::size_t n, void* decisions) {
  const auto* obs = static_cast<const malv_cpu_sched_observation*>(observations);
  auto* out = static_cast<malv_cpu_sched_decision*>(decisions);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = obs[i].kind == MALV_CPU_SCHED_MIGRATE
                 ? malv_cpu_sched_decision{0, 0, MALV_CPU_MIGRATE_DEFAULT, 0}
                 : malv_cpu_sched_decision{MALV_CPU_WEIGHT_DEFAULT, MALV_CPU_PLACE_ANY, 0, 0};
  }
  return MALV_MLAAS_OK;
}

constexpr malv_policy kBaselines[] = {
    {MALV_POLICY_GPU_SCHED, "fifo", "oldest work item first", create_stateless, destroy_stateless,
     gpu_fifo, nullptr, nullptr},
    {MALV_POLICY_MEMORY, "lru", "least recently used buffer evicted first", create_stateless,
     destroy_stateless, memory_lru, nullptr, nullptr},
    {MALV_POLICY_CPU_SCHED, "none", "the host leaves the CPUs alone (default weight, any core)",
     create_stateless, destroy_stateless, cpu_none, nullptr, nullptr},
    {MALV_POLICY_PREFETCH, "fixed", "fixed prefetch depth", create_stateless, destroy_stateless,
     prefetch_fixed, nullptr, nullptr},
};

constexpr malv_mlaas_module kBuiltin = {MALV_MLAAS_ABI_VERSION, 4, "builtin", "1.0.0", kBaselines};

}  // namespace

const malv_policy& baseline_policy(PolicyClass cls) {
  switch (cls) {
    case PolicyClass::kGpuSched: return kBaselines[0];
    case PolicyClass::kMemory: return kBaselines[1];
    case PolicyClass::kCpuSched: return kBaselines[2];
    case PolicyClass::kPrefetch: return kBaselines[3];
  }
  return kBaselines[0];
}

const malv_mlaas_module& builtin_module() { return kBuiltin; }

}  // namespace malv::mlaas
