/* malv_round_robin: an example MLaaS module with one gpu_sched policy,
 * `round-robin`, built out of tree against include/malv/mlaas.h alone.
 *
 * It serves VMs in turn by vm_id: the VM after the one served last goes
 * first, and within a VM the oldest item. Its state (the VM served last) is
 * per instance, i.e. per VM that selects it; the host runs the item with the
 * lowest score, so decide() records that item's VM as served.
 */
#include <malv/mlaas.h>
#include <stdlib.h>

typedef struct round_robin_state {
  const malv_host_services* host;
  uint64_t last_vm;
} round_robin_state;

static int rr_create(const malv_host_services* services, const char* vm_name, void** state) {
  round_robin_state* s = (round_robin_state*)calloc(1, sizeof(*s));
  (void)vm_name;
  if (s == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  s->host = services;
  if (services != NULL && services->log != NULL) {
    services->log(services, MALV_LOG_INFO, "round-robin: instance created");
  }
  *state = s;
  return MALV_MLAAS_OK;
}

static void rr_destroy(void* state) { free(state); }

static int rr_decide(void* state, const void* observations, size_t n, void* decisions) {
  round_robin_state* s = (round_robin_state*)state;
  const malv_gpu_sched_observation* obs = (const malv_gpu_sched_observation*)observations;
  malv_gpu_sched_decision* out = (malv_gpu_sched_decision*)decisions;
  size_t i;
  size_t best = 0;
  for (i = 0; i < n; ++i) {
    /* Distance from the VM served last, cyclically: last+1 is 0. Scaled so
     * the VM order dominates; the item's age (in seconds) breaks ties. */
    uint64_t distance = (obs[i].vm_id - s->last_vm - 1u) & 0xffffffu;
    out[i].score = (double)distance * 1e6 - (double)obs[i].waited_ns * 1e-9;
    if (out[i].score < out[best].score) best = i;
  }
  if (n > 0) s->last_vm = obs[best].vm_id;
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_GPU_SCHED, "round-robin", "VMs served in turn by id", rr_create, rr_destroy,
     rr_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {MALV_MLAAS_ABI_VERSION, 1, "malv_round_robin", "0.1.0",
                                          kPolicies};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
