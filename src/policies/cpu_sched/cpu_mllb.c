/* malv_cpu_mllb: MLLB, a learned load balancer, as an MLaaS cpu_sched
 * module (after Chen et al., "Machine Learning for Load Balancing in the
 * Linux Kernel", APSys '20, and LAKE, ASPLOS '23).
 *
 *   mllb  CPU shares and a latency VM's dedicated core as `class` (latency
 *         VMs 8x the default weight, batch VMs by compute weight); a batch
 *         VM gets MALV_CPU_PLACE_BALANCED: the host places each of the
 *         VM's threads on one core itself and, when its
 *         cores are imbalanced, asks this policy for every candidate thread
 *         whether to move it (the decision Linux's can_migrate_task()
 *         makes). The answer is a small MLP's, trained by `malv mllb train`
 *         on real dumps of the kernel's decisions (docs/mllb.md), over the
 *         inputs include/malv/mllb_features.h defines. Inference goes
 *         through the host's MLaaS inference service: one model_infer call
 *         per decision for all candidates, batched with other callers and
 *         run on the accelerator past the measured crossover.
 *
 * The model ships beside the module (malv_mllb.safetensors); the
 * environment variable MALV_MLLB_MODEL names another file.
 *
 * Plain C against the C ABI only. */
#define _GNU_SOURCE /* dladdr (module_model.h), before any system header */
#include <malv/mlaas.h>
#include <malv/mllb_features.h>
#include <math.h>
#include <stdlib.h>

#include "class_weight.h"
#include "module_model.h"

#define MODEL_FILE "malv_mllb.safetensors"
#define MODEL_ENV "MALV_MLLB_MODEL"

typedef struct mllb_state {
  const malv_host_services* services;
  malv_model model;
  malv_model_scratch scratch; /* rows of MALV_MLLB_FEATURE_COUNT in, 1 out */
} mllb_state;

/* An object in this module, whose address dladdr() maps to its file. */
static const char kModuleAnchor = 0;

static void mllb_destroy(void* opaque) {
  mllb_state* state = (mllb_state*)opaque;
  if (state == NULL) return;
  if (state->services != NULL && state->services->model_release != NULL && state->model != 0) {
    state->services->model_release(state->services, state->model);
  }
  malv_model_scratch_free(&state->scratch);
  free(state);
}

static int mllb_create(const malv_host_services* services, const char* vm_name, void** out_state) {
  mllb_state* state;
  int status;
  (void)vm_name;
  state = (mllb_state*)calloc(1, sizeof(*state));
  if (state == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  status = malv_module_load_model(services, &kModuleAnchor, MODEL_FILE, MODEL_ENV,
                                  MALV_MLLB_FEATURE_COUNT, 1, &state->model);
  if (status != MALV_MLAAS_OK) {
    free(state);
    return status;
  }
  state->services = services;
  *out_state = state;
  return MALV_MLAAS_OK;
}

static int mllb_decide(void* opaque, const void* observations, size_t n, void* decisions) {
  mllb_state* state = (mllb_state*)opaque;
  const malv_cpu_sched_observation* obs = (const malv_cpu_sched_observation*)observations;
  malv_cpu_sched_decision* out = (malv_cpu_sched_decision*)decisions;
  size_t i, rows = 0;
  int status;
  if (malv_model_scratch_reserve(&state->scratch, n, MALV_MLLB_FEATURE_COUNT, 1) != 0) {
    return MALV_MLAAS_ERR_NO_MEMORY;
  }
  for (i = 0; i < n; ++i) {
    if (obs[i].kind != MALV_CPU_SCHED_MIGRATE) continue;
    malv_mllb_features(&obs[i].migration, state->scratch.in + rows * MALV_MLLB_FEATURE_COUNT);
    ++rows;
  }
  if (rows > 0) {
    status = state->services->model_infer(state->services, state->model, state->scratch.in, rows,
                                          state->scratch.out);
    if (status != MALV_MLAAS_OK) return status;
  }
  rows = 0;
  for (i = 0; i < n; ++i) {
    out[i].reserved = 0;
    if (obs[i].kind == MALV_CPU_SCHED_MIGRATE) {
      const float y = state->scratch.out[rows++];
      if (isnan(y)) return MALV_MLAAS_ERR_INTERNAL;
      out[i].weight = 0;
      out[i].placement = 0;
      out[i].migrate = malv_mllb_migrate(y) ? MALV_CPU_MIGRATE_YES : MALV_CPU_MIGRATE_NO;
      continue;
    }
    out[i].weight = malv_cpu_clamp_weight(malv_cpu_class_weight(&obs[i]));
    /* A latency VM keeps class's core of its own; the batch VMs' threads
     * are the ones the host places and the model moves. */
    out[i].placement = obs[i].priority_class == MALV_PRIORITY_LATENCY
                           ? malv_cpu_class_placement(&obs[i])
                           : MALV_CPU_PLACE_BALANCED;
    out[i].migrate = 0;
  }
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_CPU_SCHED, "mllb",
     "shares as class; the host places the VM's threads and an MLP trained on the kernel's "
     "balancer decides which to move",
     mllb_create, mllb_destroy, mllb_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {
    MALV_MLAAS_ABI_VERSION,
    sizeof(kPolicies) / sizeof(kPolicies[0]),
    "malv_cpu_mllb",
    "1.0.0",
    kPolicies,
};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
