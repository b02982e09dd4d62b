/* malv_cpu_share_basic: the heuristic cpu_sched policies as an MLaaS module.
 *
 *   class      a latency-class VM gets MALV_CPU_LATENCY_WEIGHT_FACTOR (8) times the
 *              default weight and a core of its own (MALV_CPU_PLACE_DEDICATED:
 *              the host gives one while at least one is left for the
 *              others), so its guest and the host threads serving it run as
 *              soon as they wake; a batch VM gets the default weight times
 *              its compute weight (the VM's `weight`) on the other cores, so
 *              batch VMs share them in the ratio the admin gave them.
 *   gpu-aware  as `class`, and a batch VM whose accelerator waited for its
 *              CPU side (the device had none of its work while it ran a
 *              job) gets up to STARVED_WEIGHT_FACTOR times more, in
 *              proportion to the share of time the device waited (smoothed
 *              over decisions): CPU goes to where the accelerator starves,
 *              not to the VM that merely asks for it. The share is the one
 *              the host publishes (feature schema "malv.vm", starved_share,
 *              docs/mlaas-abi.md), not recomputed here; a host that does not
 *              publish it fails the policy's create, saying so. Until the
 *              first value is published the observation's accel_starved_ns
 *              over interval_ns stands in.
 *
 * Batch VMs stay on any core but the latency VMs' (MALV_CPU_PLACE_ANY).
 * Migrations are left to the kernel's rule (MALV_CPU_MIGRATE_DEFAULT). The
 * host adds a short time slice for a latency VM's threads whose weight is
 * above the default (cpu_control/cpu_share_controller.h).
 *
 * The host caps every weight at the VM's `cpu_weight_limit`, so a policy a
 * guest selects cannot give that guest more than the admin allows.
 *
 * Plain C against include/malv/mlaas.h only. */
#include <malv/mlaas.h>
#include <stdlib.h>

#include "class_weight.h"

#define STARVED_WEIGHT_FACTOR 4.0
/* Weight of the newest interval in the smoothed starvation share. */
#define STARVED_SMOOTHING 0.5

static void leave_migration_to_kernel(malv_cpu_sched_decision* d) {
  d->weight = 0;
  d->placement = 0;
  d->migrate = MALV_CPU_MIGRATE_DEFAULT;
  d->reserved = 0;
}

static int stateless_create(const malv_host_services* services, const char* vm_name,
                            void** out_state) {
  (void)services;
  (void)vm_name;
  *out_state = NULL;
  return MALV_MLAAS_OK;
}

static void stateless_destroy(void* state) { (void)state; }

static int class_decide(void* state, const void* observations, size_t n, void* decisions) {
  const malv_cpu_sched_observation* obs = (const malv_cpu_sched_observation*)observations;
  malv_cpu_sched_decision* out = (malv_cpu_sched_decision*)decisions;
  size_t i;
  (void)state;
  for (i = 0; i < n; ++i) {
    if (obs[i].kind == MALV_CPU_SCHED_MIGRATE) {
      leave_migration_to_kernel(&out[i]);
      continue;
    }
    out[i].weight = malv_cpu_clamp_weight(malv_cpu_class_weight(&obs[i]));
    out[i].placement = malv_cpu_class_placement(&obs[i]);
    out[i].migrate = 0;
    out[i].reserved = 0;
  }
  return MALV_MLAAS_OK;
}

/* The host's per-VM features (docs/mlaas-abi.md, "Features the host
 * publishes"): starved_share is the second of the schema's names. */
#define VM_FEATURES "malv.vm"
#define STARVED_SHARE_INDEX 1u
#define VM_FEATURES_MAX 16u

typedef struct gpu_aware_state {
  const malv_host_services* services;
  malv_feature_schema vm_features;
  size_t vm_feature_count;
  double starved_share; /* smoothed share of time the device waited for the VM */
  int seen;             /* a share has been observed */
} gpu_aware_state;

static int gpu_aware_create(const malv_host_services* services, const char* vm_name,
                            void** out_state) {
  gpu_aware_state* state;
  malv_feature_schema schema = 0;
  size_t count = 0;
  (void)vm_name;
  if (services->feature_find(services, VM_FEATURES, &schema, &count) != MALV_MLAAS_OK ||
      count <= STARVED_SHARE_INDEX || count > VM_FEATURES_MAX) {
    services->log(services, MALV_LOG_ERROR,
                  "gpu-aware reads the host's feature malv.vm/starved_share, which this host "
                  "does not publish");
    return MALV_MLAAS_ERR_NOT_FOUND;
  }
  state = (gpu_aware_state*)calloc(1, sizeof(*state));
  if (state == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  state->services = services;
  state->vm_features = schema;
  state->vm_feature_count = count;
  *out_state = state;
  return MALV_MLAAS_OK;
}

/* The VM's latest published starved share; -1 when none is published yet. */
static double published_starved_share(const gpu_aware_state* state, uint64_t vm_id) {
  float row[VM_FEATURES_MAX];
  size_t rows = 0;
  if (state->services->feature_read(state->services, state->vm_features, vm_id, row, 1, &rows) !=
          MALV_MLAAS_OK ||
      rows == 0) {
    return -1.0;
  }
  return (double)row[STARVED_SHARE_INDEX];
}

static void gpu_aware_destroy(void* state) { free(state); }

static int gpu_aware_decide(void* opaque, const void* observations, size_t n, void* decisions) {
  gpu_aware_state* state = (gpu_aware_state*)opaque;
  const malv_cpu_sched_observation* obs = (const malv_cpu_sched_observation*)observations;
  malv_cpu_sched_decision* out = (malv_cpu_sched_decision*)decisions;
  size_t i;
  for (i = 0; i < n; ++i) {
    double weight;
    if (obs[i].kind == MALV_CPU_SCHED_MIGRATE) {
      leave_migration_to_kernel(&out[i]);
      continue;
    }
    weight = malv_cpu_class_weight(&obs[i]);
    if (obs[i].priority_class != MALV_PRIORITY_LATENCY && obs[i].interval_ns > 0) {
      double share = published_starved_share(state, obs[i].vm_id);
      if (share < 0) share = (double)obs[i].accel_starved_ns / (double)obs[i].interval_ns;
      if (share < 0) share = 0;
      if (share > 1) share = 1;
      state->starved_share =
          state->seen ? STARVED_SMOOTHING * share + (1.0 - STARVED_SMOOTHING) * state->starved_share
                      : share;
      state->seen = 1;
      weight *= 1.0 + (STARVED_WEIGHT_FACTOR - 1.0) * state->starved_share;
    }
    out[i].weight = malv_cpu_clamp_weight(weight);
    out[i].placement = malv_cpu_class_placement(&obs[i]);
    out[i].migrate = 0;
    out[i].reserved = 0;
  }
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_CPU_SCHED, "class",
     "latency VMs get 8x the default CPU weight; batch VMs share by compute weight",
     stateless_create, stateless_destroy, class_decide, NULL, NULL},
    {MALV_POLICY_CPU_SCHED, "gpu-aware",
     "as class, plus up to 4x for a batch VM whose accelerator waits for its CPU side",
     gpu_aware_create, gpu_aware_destroy, gpu_aware_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {MALV_MLAAS_ABI_VERSION, 2, "malv_cpu_share_basic",
                                          "1.0.0", kPolicies};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
