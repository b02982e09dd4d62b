/* malv_prefetch_basic: prefetch-depth policies as an MLaaS module.
 *
 *   adaptive  the depth follows the consumer's stalls: a decision period in
 *             which the consumer waited for data grows the depth by half
 *             (at least one), up to the stream's max_depth; three periods
 *             in a row without a stall shrink it by one, down to 1 (staged
 *             batches hold device memory). When the producer is slower than
 *             the consumer on average, the depth is at least what covers
 *             the difference for one period: ceil(consumption / production)
 *             + 1. Like TCP's congestion window: grow fast on a stall,
 *             shrink slowly.
 *
 * One instance per VM; its one piece of state, the count of calm periods, is
 * shared by the VM's streams (a VM's pipelines behave alike).
 *
 * Plain C against include/malv/mlaas.h only. */
#include <malv/mlaas.h>
#include <stdlib.h>

#define CALM_PERIODS_TO_SHRINK 3u

typedef struct adaptive_state {
  uint32_t calm; /* decision periods in a row without a consumer stall */
} adaptive_state;

static int adaptive_create(const malv_host_services* services, const char* vm_name,
                           void** out_state) {
  adaptive_state* state;
  (void)services;
  (void)vm_name;
  state = (adaptive_state*)calloc(1, sizeof(*state));
  if (state == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  *out_state = state;
  return MALV_MLAAS_OK;
}

static void adaptive_destroy(void* state) { free(state); }

static uint32_t clamp_depth(uint64_t depth, uint32_t max_depth) {
  if (depth < 1) depth = 1;
  if (max_depth >= 1 && depth > max_depth) depth = max_depth;
  return (uint32_t)depth;
}

static int adaptive_decide(void* opaque, const void* observations, size_t n, void* decisions) {
  adaptive_state* state = (adaptive_state*)opaque;
  const malv_prefetch_observation* obs = (const malv_prefetch_observation*)observations;
  malv_prefetch_decision* out = (malv_prefetch_decision*)decisions;
  size_t i;
  for (i = 0; i < n; ++i) {
    uint64_t depth = obs[i].current_depth < 1 ? 1 : obs[i].current_depth;
    if (obs[i].consumer_stall_ns > 0) {
      uint64_t step = depth / 2;
      if (step < 1) step = 1;
      depth += step;
      state->calm = 0;
    } else if (++state->calm >= CALM_PERIODS_TO_SHRINK) {
      if (depth > 1) --depth;
      state->calm = 0;
    }
    if (obs[i].production_per_s > 0.0 && obs[i].consumption_per_s > obs[i].production_per_s) {
      const double ratio = obs[i].consumption_per_s / obs[i].production_per_s;
      const uint64_t cover = (uint64_t)ratio + 2; /* at least ceil(ratio) + 1 */
      if (depth < cover) depth = cover;
    }
    out[i].depth = clamp_depth(depth, obs[i].max_depth);
  }
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_PREFETCH, "adaptive",
     "depth grows by half when the consumer stalled, shrinks by one after three calm periods",
     adaptive_create, adaptive_destroy, adaptive_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {MALV_MLAAS_ABI_VERSION,
                                          (uint32_t)(sizeof(kPolicies) / sizeof(kPolicies[0])),
                                          "malv_prefetch_basic", "1.0.0", kPolicies};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
