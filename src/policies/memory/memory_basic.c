/* malv_memory_basic: memory (eviction) policies as an MLaaS module.
 *
 *   lru        evict_score = age_ns: the buffer unused for longest goes first.
 *   lookahead  Belady within the visible queue: the buffer whose next use is
 *              furthest away (in queued ops) goes first. Buffers that no
 *              queued op uses come before every queued one, among them the
 *              least recently used first. At equal distance (equal age for
 *              the unqueued) a clean buffer goes before a dirty one: dropping
 *              it costs no copy-out.
 *
 * lookahead's scores, highest evicted first, in two disjoint bands:
 *
 *   not queued   [0, 1e18]         2 * min(age, MEMORY_MAX_AGE_NS) + clean
 *   queued       [-2^51, -2^50)    -2^51 + 2 * min(ops, MEMORY_MAX_OPS) + clean
 *
 * Both stay within MALV_MLAAS_SCORE_LIMIT. The queued band is exact in a
 * double; the unqueued one is exact up to ages of 2^52 ns (52 days), past
 * which rounding may merge neighbours but never reverses their order.
 * Negative ages count as 0.
 *
 * Plain C against include/malv/mlaas.h only. */
#include <malv/mlaas.h>

/* 2 * age + 1 stays within MALV_MLAAS_SCORE_LIMIT (1e18). */
#define MEMORY_MAX_AGE_NS ((int64_t)499999999999999999)
/* 2^49 - 1 ops: 2 * ops + 1 stays below 2^50, the width of the queued band. */
#define MEMORY_MAX_OPS ((uint64_t)562949953421311)
/* The queued band's floor, -2^51. */
#define MEMORY_QUEUED_FLOOR (-2251799813685248.0)

static int stateless_create(const malv_host_services* services, const char* vm_name, void** state) {
  (void)services;
  (void)vm_name;
  *state = NULL;
  return MALV_MLAAS_OK;
}

static void stateless_destroy(void* state) { (void)state; }

/* age_ns clamped into [-limit, limit]: an absurd clock cannot make the
 * decision invalid. */
static double lru_score(int64_t age_ns) {
  double age = (double)age_ns;
  if (age > MALV_MLAAS_SCORE_LIMIT) return MALV_MLAAS_SCORE_LIMIT;
  if (age < -MALV_MLAAS_SCORE_LIMIT) return -MALV_MLAAS_SCORE_LIMIT;
  return age;
}

static int lru_decide(void* state, const void* observations, size_t n, void* decisions) {
  const malv_memory_observation* obs = (const malv_memory_observation*)observations;
  malv_memory_decision* out = (malv_memory_decision*)decisions;
  size_t i;
  (void)state;
  for (i = 0; i < n; ++i) out[i].evict_score = lru_score(obs[i].age_ns);
  return MALV_MLAAS_OK;
}

static double lookahead_score(const malv_memory_observation* o) {
  const double clean = o->dirty ? 0.0 : 1.0;
  if (o->next_use_ops == MALV_MEMORY_NOT_QUEUED) {
    int64_t age = o->age_ns;
    if (age < 0) age = 0;
    if (age > MEMORY_MAX_AGE_NS) age = MEMORY_MAX_AGE_NS;
    return 2.0 * (double)age + clean;
  }
  {
    uint64_t ops = o->next_use_ops;
    if (ops > MEMORY_MAX_OPS) ops = MEMORY_MAX_OPS;
    return MEMORY_QUEUED_FLOOR + 2.0 * (double)ops + clean;
  }
}

static int lookahead_decide(void* state, const void* observations, size_t n, void* decisions) {
  const malv_memory_observation* obs = (const malv_memory_observation*)observations;
  malv_memory_decision* out = (malv_memory_decision*)decisions;
  size_t i;
  (void)state;
  for (i = 0; i < n; ++i) out[i].evict_score = lookahead_score(&obs[i]);
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_MEMORY, "lru", "least recently used buffer evicted first", stateless_create,
     stateless_destroy, lru_decide, NULL, NULL},
    {MALV_POLICY_MEMORY, "lookahead",
     "buffer used furthest ahead in the queued work evicted first (Belady), unqueued ones "
     "first by age",
     stateless_create, stateless_destroy, lookahead_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {MALV_MLAAS_ABI_VERSION,
                                          (uint32_t)(sizeof(kPolicies) / sizeof(kPolicies[0])),
                                          "malv_memory_basic", "2.0.0", kPolicies};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
