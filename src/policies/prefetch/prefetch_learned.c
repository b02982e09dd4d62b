/* malv_prefetch_learned: a learned prefetch-depth policy as an MLaaS module,
 * in the spirit of KML (Akgun et al., "KML: Using Machine Learning to
 * Improve Storage Systems", which learns readahead sizes with a small
 * neural network from observed I/O features).
 *
 *   learned   a small MLP, trained offline by `malv prefetch train` on
 *             outcomes `malv prefetch record` recorded (a training VM whose
 *             data step varies, depths drawn at random), predicts the
 *             consumer's stall in the coming period for every depth from 1
 *             to max_depth (include/malv/prefetch_features.h: the stream's
 *             recent stalls, the production and consumption rates, the
 *             current depth); the policy takes the depth whose predicted
 *             stall plus MALV_PREFETCH_DEPTH_COST steps per staged batch is
 *             least (staged batches hold device memory: a deeper depth must
 *             buy at least that much less stall).
 *
 * The model runs through the host's MLaaS inference service (model_load,
 * model_infer): every candidate of every observation in one batch per
 * decision. It is the file malv_prefetch_learned.safetensors beside this
 * module, or the file that the environment variable MALV_PREFETCH_LEARNED_MODEL
 * names. A missing or unloadable model (or one with other than
 * MALV_PREFETCH_FEATURE_COUNT (9) inputs and one output) makes create() fail
 * with the service's error: the VM keeps its previous policy.
 *
 * State: one instance per VM, a history per stream (the VM's last
 * MAX_STREAMS streams; a new one takes the place of the least recently
 * seen).
 *
 * Plain C against include/malv/mlaas.h and malv/prefetch_features.h only. */
#define _GNU_SOURCE /* dladdr (module_model.h), before any system header */
#include <malv/mlaas.h>
#include <malv/prefetch_features.h>
#include <stdlib.h>
#include <string.h>

#include "module_model.h"

#define MODEL_FILE "malv_prefetch_learned.safetensors"
#define MODEL_ENV "MALV_PREFETCH_LEARNED_MODEL"
#define MAX_STREAMS 8u
/* Depths considered at most (1..this); a deeper max_depth is not explored. */
#define MAX_CANDIDATES 32u

typedef struct stream_history {
  uint64_t stream_id;
  uint64_t last_seen; /* decision counter; 0: slot unused */
  malv_prefetch_history history;
} stream_history;

typedef struct learned_state {
  const malv_host_services* services;
  malv_model model;
  malv_model_scratch scratch; /* rows of MALV_PREFETCH_FEATURE_COUNT in, 1 out */
  stream_history streams[MAX_STREAMS];
  uint64_t decisions;
} learned_state;

/* An object in this module, whose address dladdr() maps to its file. */
static const char kModuleAnchor = 0;

static void learned_destroy(void* opaque) {
  learned_state* state = (learned_state*)opaque;
  if (state == NULL) return;
  if (state->services != NULL && state->services->model_release != NULL && state->model != 0) {
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
                                  MALV_PREFETCH_FEATURE_COUNT, 1, &state->model);
  if (status != MALV_MLAAS_OK) {
    free(state);
    return status;
  }
  state->services = services;
  *out_state = state;
  return MALV_MLAAS_OK;
}

static malv_prefetch_history* history_of(learned_state* state, uint64_t stream_id) {
  stream_history* oldest = &state->streams[0];
  uint32_t i;
  ++state->decisions;
  for (i = 0; i < MAX_STREAMS; ++i) {
    stream_history* s = &state->streams[i];
    if (s->last_seen != 0 && s->stream_id == stream_id) {
      s->last_seen = state->decisions;
      return &s->history;
    }
    if (s->last_seen < oldest->last_seen) oldest = s;
  }
  memset(oldest, 0, sizeof(*oldest));
  oldest->stream_id = stream_id;
  oldest->last_seen = state->decisions;
  return &oldest->history;
}

/* Depths 1..this are scored; 0 only when max_depth is 0 (the answer is 0). */
static uint32_t candidates_of(const malv_prefetch_observation* o) {
  return o->max_depth < MAX_CANDIDATES ? o->max_depth : MAX_CANDIDATES;
}

static int learned_decide(void* opaque, const void* observations, size_t n, void* decisions) {
  learned_state* state = (learned_state*)opaque;
  const malv_prefetch_observation* obs = (const malv_prefetch_observation*)observations;
  malv_prefetch_decision* out = (malv_prefetch_decision*)decisions;
  size_t i, rows = 0;
  int status;
  for (i = 0; i < n; ++i) rows += candidates_of(&obs[i]);
  if (rows > 0 &&
      malv_model_scratch_reserve(&state->scratch, rows, MALV_PREFETCH_FEATURE_COUNT, 1) != 0) {
    return MALV_MLAAS_ERR_NO_MEMORY;
  }
  rows = 0;
  for (i = 0; i < n; ++i) {
    malv_prefetch_history* h = history_of(state, obs[i].stream_id);
    const uint32_t count = candidates_of(&obs[i]);
    uint32_t d;
    malv_prefetch_history_push(h, &obs[i]);
    for (d = 1; d <= count; ++d) {
      malv_prefetch_features(h, &obs[i], d,
                             state->scratch.in + (rows++) * MALV_PREFETCH_FEATURE_COUNT);
    }
  }
  if (rows > 0) {
    status = state->services->model_infer(state->services, state->model, state->scratch.in, rows,
                                          state->scratch.out);
    if (status != MALV_MLAAS_OK) return status;
  }
  rows = 0;
  for (i = 0; i < n; ++i) {
    const uint32_t count = candidates_of(&obs[i]);
    const uint32_t depth = count == 0 ? 0 : malv_prefetch_pick(state->scratch.out + rows, count);
    if (count > 0 && depth == 0) return MALV_MLAAS_ERR_INTERNAL; /* a NaN prediction */
    out[i].depth = depth; /* 1..count, within [1, max_depth]; 0 when max_depth is 0 */
    rows += count;
  }
  return MALV_MLAAS_OK;
}

static const malv_policy kPolicies[] = {
    {MALV_POLICY_PREFETCH, "learned",
     "the depth whose stall, as an MLP (trained by malv prefetch train) predicts it from the "
     "stream's recent stalls and rates, plus 0.01 steps a staged batch is least",
     learned_create, learned_destroy, learned_decide, NULL, NULL},
};

static const malv_mlaas_module kModule = {
    MALV_MLAAS_ABI_VERSION,
    sizeof(kPolicies) / sizeof(kPolicies[0]),
    "malv_prefetch_learned",
    "1.0.0",
    kPolicies,
};

MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
