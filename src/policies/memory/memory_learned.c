/* malv_memory_learned: a learned eviction policy as an MLaaS module.
 *
 *   learned   evicts the buffer whose next use is predicted furthest away.
 *             A candidate that queued work uses has a known distance
 *             (next_use_ops); for the others a small MLP, trained by `malv
 *             memory train` on access traces the host recorded, predicts it
 *             from the buffer's reuse history (include/malv/memory_features.h),
 *             so the policy stays near Belady when a guest queues nothing
 *             ahead (a guest that waits for each op).
 *
 * The model runs through the host's MLaaS inference service (model_load,
 * model_infer): one batch of every candidate per decision. It is the file
 * malv_memory_learned.safetensors beside this module, or the file that the
 * environment variable MALV_MEMORY_LEARNED_MODEL names (a host-wide
 * override, for trying another model without reinstalling). A missing or
 * unloadable model makes create() fail: the VM keeps its previous policy.
 *
 * Scores (higher evicted first), all within MALV_MLAAS_SCORE_LIMIT:
 *   queued      log1p(next_use_ops + 1)      the known distance
 *   not queued  the model's log1p(distance), at least log1p(1), at most
 *               log1p(MALV_MEMORY_FAR_OPS); a NaN output is an error (the
 *               host's LRU decides that call)
 *
 * Plain C against include/malv/mlaas.h and malv/memory_features.h only. */
#define _GNU_SOURCE /* dladdr (module_model.h), before any system header */
#include <malv/memory_features.h>
#include <malv/mlaas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "module_model.h"

#define MODEL_FILE "malv_memory_learned.safetensors"
#define MODEL_ENV "MALV_MEMORY_LEARNED_MODEL"

typedef struct learned_state {
  const malv_host_services* services;
  malv_model model;
  malv_model_scratch scratch; /* rows of MALV_MEMORY_FEATURE_COUNT in, 1 out */
} learned_state;

/* An object in this module, whose address dladdr() maps to its file. */
static const char kModuleAnchor = 0;

static void learned_destroy(void* opaque) {
  learned_state* state = (learned_state*)opaque;
  if (state == NULL) return;
  if (state->services != NULL && state->services->model_release != NULL) {
    state->services->model_release(state->services, state->model);
  }
  malv_model_scratch_free(&state->scratch);
  free(state);
}

static int learned_create(const malv_host_services* services, const char* vm_name,
                          void** out_state) {
  learned_state* state;
  int status;
  (void)vm_name;
  state = (learned_state*)calloc(1, sizeof(*state));
  if (state == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  status = malv_module_load_model(services, &kModuleAnchor, MODEL_FILE, MODEL_ENV,
                                  MALV_MEMORY_FEATURE_COUNT, 1, &state->model);
  if (status != MALV_MLAAS_OK) {
    free(state);
    return status;
  }
  state->services = services;
  *out_state = state;
  return MALV_MLAAS_OK;
}

static int learned_decide(void* opaque, const void* observations, size_t n, void* decisions) {
  learned_state* state = (learned_state*)opaque;
  const malv_memory_observation* obs = (const malv_memory_observation*)observations;
  malv_memory_decision* out = (malv_memory_decision*)decisions;
  const double floor_score = log1p(1.0);
  const double ceiling_score = log1p((double)MALV_MEMORY_FAR_OPS);
  size_t i, rows = 0;
  int status;
  if (malv_model_scratch_reserve(&state->scratch, n, MALV_MEMORY_FEATURE_COUNT, 1) != 0) {
    return MALV_MLAAS_ERR_NO_MEMORY;
  }
  /* Only the unqueued need the model; their rows are packed in order. */
  for (i = 0; i < n; ++i) {
    if (obs[i].next_use_ops != MALV_MEMORY_NOT_QUEUED) continue;
    malv_memory_features(&obs[i], state->scratch.in + rows * MALV_MEMORY_FEATURE_COUNT);
    ++rows;
  }
  if (rows > 0) {
    status = state->services->model_infer(state->services, state->model, state->scratch.in, rows,
                                          state->scratch.out);
    if (status != MALV_MLAAS_OK) return status;
  }
  rows = 0;
  for (i = 0; i < n; ++i) {
    double score;
    if (obs[i].next_use_ops != MALV_MEMORY_NOT_QUEUED) {
      double ops = (double)obs[i].next_use_ops + 1.0;
      if (ops > (double)MALV_MEMORY_FAR_OPS) ops = (double)MALV_MEMORY_FAR_OPS;
      score = log1p(ops);
    } else {
      score = (double)state->scratch.out[rows++];
      if (isnan(score)) return MALV_MLAAS_ERR_INTERNAL;
      if (score < floor_score) score = floor_score;
      if (score > ceiling_score) score = ceiling_score;
    }
    out[i].evict_score = score;
  }
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_MEMORY, "learned",
     "buffer whose next use is furthest evicted first: known from the queue, else predicted "
     "by an MLP from its reuse history",
     learned_create, learned_destroy, learned_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {
    MALV_MLAAS_ABI_VERSION,
    sizeof(kPolicies) / sizeof(kPolicies[0]),
    "malv_memory_learned",
    "1.0.0",
    kPolicies,
};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
