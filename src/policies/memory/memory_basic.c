/* malv_memory_basic: memory (eviction) policies as an MLaaS module.
 *
 *   lru   evict_score = age_ns: the buffer unused for longest goes first.
 *
 * Plain C against include/malv/mlaas.h only. */
#include <malv/mlaas.h>

static int lru_create(const malv_host_services* services, const char* vm_name, void** state) {
  (void)services;
  (void)vm_name;
  *state = NULL;
  return MALV_MLAAS_OK;
}

static void lru_destroy(void* state) { (void)state; }

static int lru_decide(void* state, const void* observations, size_t n, void* decisions) {
  const malv_memory_observation* obs = (const malv_memory_observation*)observations;
  malv_memory_decision* out = (malv_memory_decision*)decisions;
  size_t i;
  (void)state;
  for (i = 0; i < n; ++i) out[i].evict_score = (double)obs[i].age_ns;
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_MEMORY, "lru", "least recently used buffer evicted first", lru_create, lru_destroy,
     lru_decide, NULL},
};

static const malv_mlaas_module kModule = {MALV_MLAAS_ABI_VERSION, 1, "malv_memory_basic", "1.0.0",
                                          kPolicies};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
