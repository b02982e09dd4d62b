/* Test modules for the MLaaS loader and guardrail tests. One source, built
 * several times with TEST_MODULE_KIND selecting what is wrong with it:
 *
 *   0  good: policies that misbehave on purpose, one per guardrail
 *   1  the same module name as 0, in another file (duplicate)
 *   2  built against an older ABI version
 *   3  no entry point symbol
 *   4  entry point returns NULL
 *   5  a policy with an unknown class
 *   6  a policy with a NULL decide
 *   7  an empty module name
 *   8  enqueue_inputs on a policy that is not gpu_sched
 */
#define _POSIX_C_SOURCE 199309L
#include <malv/mlaas.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#ifndef TEST_MODULE_KIND
#define TEST_MODULE_KIND 0
#endif

typedef struct counter_state {
  long feedbacks;
  long decides;
  long calls;
} counter_state;

static int create_counter(const malv_host_services* services, const char* vm, void** state) {
  counter_state* s = (counter_state*)calloc(1, sizeof(counter_state));
  (void)services;
  (void)vm;
  if (s == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  *state = s;
  return MALV_MLAAS_OK;
}
static void destroy_counter(void* state) { free(state); }

static int create_fails(const malv_host_services* services, const char* vm, void** state) {
  (void)services;
  (void)vm;
  *state = NULL;
  return MALV_MLAAS_ERR_INTERNAL;
}

/* Scores by reverse enqueue time (newest first), so a test can tell this
 * policy's decisions from the fifo baseline's. */
static int newest_first(void* state, const void* obs, size_t n, void* out) {
  const malv_gpu_sched_observation* o = (const malv_gpu_sched_observation*)obs;
  malv_gpu_sched_decision* d = (malv_gpu_sched_decision*)out;
  size_t i;
  ((counter_state*)state)->decides++;
  /* Scores are ranks >= 0 (ABI 5): the newest item gets the lowest. */
  for (i = 0; i < n; ++i) d[i].score = 1e17 - (double)o[i].enqueue_time_ns;
  return MALV_MLAAS_OK;
}

static int sleepy(void* state, const void* obs, size_t n, void* out) {
  struct timespec two_ms = {0, 2000000};
  nanosleep(&two_ms, NULL);
  return newest_first(state, obs, n, out);
}

static int out_of_range(void* state, const void* obs, size_t n, void* out) {
  malv_gpu_sched_decision* d = (malv_gpu_sched_decision*)out;
  size_t i;
  (void)state;
  (void)obs;
  for (i = 0; i < n; ++i) d[i].score = 1e30;
  return MALV_MLAAS_OK;
}

static int not_a_number(void* state, const void* obs, size_t n, void* out) {
  malv_gpu_sched_decision* d = (malv_gpu_sched_decision*)out;
  size_t i;
  (void)state;
  (void)obs;
  for (i = 0; i < n; ++i) d[i].score = nan("");
  return MALV_MLAAS_OK;
}

static int erroring(void* state, const void* obs, size_t n, void* out) {
  (void)state;
  (void)obs;
  (void)n;
  (void)out;
  return MALV_MLAAS_ERR_INTERNAL;
}

/* Writes only the first decision. */
static int partial(void* state, const void* obs, size_t n, void* out) {
  malv_gpu_sched_decision* d = (malv_gpu_sched_decision*)out;
  (void)state;
  (void)obs;
  if (n > 0) d[0].score = 1.0;
  return MALV_MLAAS_OK;
}

/* Fails every other call: a streak never reaches the limit. */
static int alternating(void* state, const void* obs, size_t n, void* out) {
  counter_state* s = (counter_state*)state;
  if (s->calls++ % 2 == 1) return MALV_MLAAS_ERR_INTERNAL;
  return newest_first(state, obs, n, out);
}

/* Reports how many feedback outcomes it got as every score. */
static int feedback_count(void* state, const void* obs, size_t n, void* out) {
  malv_gpu_sched_decision* d = (malv_gpu_sched_decision*)out;
  size_t i;
  (void)obs;
  for (i = 0; i < n; ++i) d[i].score = (double)((counter_state*)state)->feedbacks;
  return MALV_MLAAS_OK;
}
static void count_feedback(void* state, const void* outcomes, size_t n) {
  (void)outcomes;
  ((counter_state*)state)->feedbacks += (long)n;
}

static int too_deep(void* state, const void* obs, size_t n, void* out) {
  const malv_prefetch_observation* o = (const malv_prefetch_observation*)obs;
  malv_prefetch_decision* d = (malv_prefetch_decision*)out;
  size_t i;
  (void)state;
  for (i = 0; i < n; ++i) d[i].depth = o[i].max_depth + 1;
  return MALV_MLAAS_OK;
}

static int evict_newest(void* state, const void* obs, size_t n, void* out) {
  const malv_memory_observation* o = (const malv_memory_observation*)obs;
  malv_memory_decision* d = (malv_memory_decision*)out;
  size_t i;
  (void)state;
  for (i = 0; i < n; ++i) d[i].evict_score = -(double)o[i].age_ns;
  return MALV_MLAAS_OK;
}

/* Infers through the host: the model named by MALV_TEST_INFER_MODEL (one
 * input, one output) is loaded at create; decide runs one row per
 * observation (its queue_id) through model_infer and scores by the answer,
 * or fails with model_infer's error. */
typedef struct inferring_state {
  const malv_host_services* services;
  malv_model model;
} inferring_state;

static int create_inferring(const malv_host_services* services, const char* vm, void** state) {
  const char* path = getenv("MALV_TEST_INFER_MODEL");
  inferring_state* s;
  int status;
  (void)vm;
  if (path == NULL) return MALV_MLAAS_ERR_NOT_FOUND;
  s = (inferring_state*)calloc(1, sizeof(inferring_state));
  if (s == NULL) return MALV_MLAAS_ERR_NO_MEMORY;
  s->services = services;
  status = services->model_load(services, path, &s->model);
  if (status != MALV_MLAAS_OK) {
    free(s);
    return status;
  }
  *state = s;
  return MALV_MLAAS_OK;
}
static void destroy_inferring(void* state) {
  inferring_state* s = (inferring_state*)state;
  s->services->model_release(s->services, s->model);
  free(s);
}
static int inferring(void* state, const void* obs, size_t n, void* out) {
  inferring_state* s = (inferring_state*)state;
  const malv_gpu_sched_observation* o = (const malv_gpu_sched_observation*)obs;
  malv_gpu_sched_decision* d = (malv_gpu_sched_decision*)out;
  size_t i;
  for (i = 0; i < n; ++i) {
    float in = (float)o[i].queue_id;
    float answer = 0.0f;
    int status = s->services->model_infer(s->services, s->model, &in, 1, &answer);
    if (status != MALV_MLAAS_OK) return status;
    d[i].score = (double)answer;
  }
  return MALV_MLAAS_OK;
}

#if TEST_MODULE_KIND == 5
#define GOOD_CLASS 99u
#else
#define GOOD_CLASS MALV_POLICY_GPU_SCHED
#endif

#if TEST_MODULE_KIND == 6
#define NEWEST_DECIDE NULL
#else
#define NEWEST_DECIDE newest_first
#endif

#if TEST_MODULE_KIND == 8
static int no_inputs(void* state, const void* observation, malv_model* model, float* row,
                     size_t capacity) {
  (void)state;
  (void)observation;
  (void)model;
  (void)row;
  (void)capacity;
  return MALV_MLAAS_ERR_INVALID;
}
#define PREFETCH_INPUTS no_inputs
#else
#define PREFETCH_INPUTS NULL
#endif

static const malv_policy kPolicies[] = {
    {GOOD_CLASS, "newest-first", "newest item first", create_counter, destroy_counter,
     NEWEST_DECIDE, count_feedback, NULL},
    {MALV_POLICY_GPU_SCHED, "sleepy", "sleeps 2 ms", create_counter, destroy_counter, sleepy, NULL,
     NULL},
    {MALV_POLICY_GPU_SCHED, "out-of-range", "scores 1e30", create_counter, destroy_counter,
     out_of_range, NULL, NULL},
    {MALV_POLICY_GPU_SCHED, "nan", "scores NaN", create_counter, destroy_counter, not_a_number,
     NULL, NULL},
    {MALV_POLICY_GPU_SCHED, "erroring", "returns an error", create_counter, destroy_counter,
     erroring, NULL, NULL},
    {MALV_POLICY_GPU_SCHED, "partial", "writes one decision", create_counter, destroy_counter,
     partial, NULL, NULL},
    {MALV_POLICY_GPU_SCHED, "alternating", "fails every other call", create_counter,
     destroy_counter, alternating, NULL, NULL},
    {MALV_POLICY_GPU_SCHED, "feedback-count", "scores = outcomes seen", create_counter,
     destroy_counter, feedback_count, count_feedback, NULL},
    {MALV_POLICY_GPU_SCHED, "create-fails", "create() fails", create_fails, destroy_counter,
     newest_first, NULL, NULL},
    {MALV_POLICY_PREFETCH, "too-deep", "depth past max_depth", create_counter, destroy_counter,
     too_deep, NULL, PREFETCH_INPUTS},
    {MALV_POLICY_MEMORY, "evict-newest", "most recently used first", create_counter,
     destroy_counter, evict_newest, NULL, NULL},
    {MALV_POLICY_MEMORY, "memory-erroring", "returns an error, counts feedback", create_counter,
     destroy_counter, erroring, count_feedback, NULL},
    {MALV_POLICY_GPU_SCHED, "inferring", "scores by a model run through model_infer",
     create_inferring, destroy_inferring, inferring, NULL, NULL},
};

#if TEST_MODULE_KIND == 2
#define MODULE_ABI (MALV_MLAAS_ABI_VERSION - 1u)
#else
#define MODULE_ABI MALV_MLAAS_ABI_VERSION
#endif

#if TEST_MODULE_KIND == 7
#define MODULE_NAME ""
#else
#define MODULE_NAME "test_policies"
#endif

#if defined(__GNUC__)
__attribute__((unused)) /* kind 4 never returns it */
#endif
static const malv_mlaas_module kModule = {MODULE_ABI,
                                          (uint32_t)(sizeof(kPolicies) / sizeof(kPolicies[0])),
                                          MODULE_NAME, "0.1.0", kPolicies};

#if TEST_MODULE_KIND == 3
MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get_misspelt(void) { return &kModule; }
#elif TEST_MODULE_KIND == 4
MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return NULL; }
#else
MALV_MLAAS_EXPORT const malv_mlaas_module* malv_mlaas_module_get(void) { return &kModule; }
#endif
