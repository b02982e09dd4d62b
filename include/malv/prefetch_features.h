/*
 * The learned prefetch policy's model inputs, from a stream's prefetch
 * observations (in the spirit of KML: readahead learned from what the I/O
 * stream did lately).
 *
 * One definition, used where the model runs (policy `learned` of
 * malv_prefetch_learned, at decision time) and where it is trained (`malv
 * prefetch train`, replaying recorded outcomes), so that the model sees at
 * run time exactly what it was trained on. Plain C11, header only: a module
 * includes it beside malv/mlaas.h.
 *
 *   malv_prefetch_history h = {0};
 *   malv_prefetch_history_push(&h, &observation);        // once per decision
 *   float in[MALV_PREFETCH_FEATURE_COUNT];
 *   malv_prefetch_features(&h, &observation, depth, in);  // per candidate depth
 *   // model_infer(in) -> out[0] estimates malv_prefetch_stall_target(the
 *   //                    consumer's stall in the period the depth applies)
 *
 * A stall is counted in consumer steps: the stall's seconds times the
 * consumption rate (batches the consumer would have taken meanwhile), so the
 * model works at any step time. The history keeps the stream's last
 * MALV_PREFETCH_HISTORY periods: stalls come back (a slow shard, a slow
 * spell of the producer), and a depth that covered the last one covers the
 * next.
 *
 *   [0]  log1p(stall steps of this period)
 *   [1]  log1p(largest stall steps in the history, this period included)
 *   [2]  log1p(the largest depth a stall of the history asked for: the
 *        depth during that period plus its stall steps; 0 if none)
 *   [3]  share of the history's periods with a stall
 *   [4]  log(consumption / production), within [-4, 4]; 0 if either is unknown
 *   [5]  log1p(periods since the last stall)
 *   [6]  log1p(current depth)
 *   [7]  log1p(the candidate depth)
 *   [8]  log1p(how far the candidate falls short of [2]'s depth: max(that - depth, 0))
 */
#ifndef MALV_PREFETCH_FEATURES_H_
#define MALV_PREFETCH_FEATURES_H_

#include <math.h>
#include <stdint.h>

#include "malv/mlaas.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MALV_PREFETCH_FEATURE_COUNT 9
#define MALV_PREFETCH_HISTORY 8
/* Stalls are counted up to this many consumer steps. */
#define MALV_PREFETCH_MAX_STALL_STEPS 1000.0

typedef struct malv_prefetch_history {
  float stall_steps[MALV_PREFETCH_HISTORY]; /* latest first */
  float needed[MALV_PREFETCH_HISTORY];      /* depth + stall steps if it stalled, else 0 */
  uint32_t count;                           /* known leading entries */
  uint32_t calm;                            /* periods since the last stall */
} malv_prefetch_history;

/* The stall of an observation's period in consumer steps. */
static inline double malv_prefetch_stall_steps(int64_t stall_ns, double consumption_per_s) {
  double steps;
  if (stall_ns <= 0 || !(consumption_per_s > 0.0)) return 0.0;
  steps = (double)stall_ns * 1e-9 * consumption_per_s;
  return steps > MALV_PREFETCH_MAX_STALL_STEPS ? MALV_PREFETCH_MAX_STALL_STEPS : steps;
}

/* What the model is trained to output for a stall of `steps` consumer steps:
 * the steps themselves, so that a regression on squared error estimates the
 * expected stall (rare long stalls are what a depth is for; a log would
 * shrink them). */
static inline float malv_prefetch_stall_target(double steps) { return (float)steps; }

static inline void malv_prefetch_history_push(malv_prefetch_history* h,
                                              const malv_prefetch_observation* o) {
  const double steps = malv_prefetch_stall_steps(o->consumer_stall_ns, o->consumption_per_s);
  uint32_t i;
  for (i = MALV_PREFETCH_HISTORY - 1; i > 0; --i) {
    h->stall_steps[i] = h->stall_steps[i - 1];
    h->needed[i] = h->needed[i - 1];
  }
  h->stall_steps[0] = (float)steps;
  h->needed[0] = steps > 0.0 ? (float)(o->current_depth + steps) : 0.0f;
  if (h->count < MALV_PREFETCH_HISTORY) ++h->count;
  h->calm = steps > 0.0 ? 0 : h->calm + 1;
}

/* The inputs for `depth` after o was pushed onto h. */
static inline void malv_prefetch_features(const malv_prefetch_history* h,
                                          const malv_prefetch_observation* o, uint32_t depth,
                                          float out[MALV_PREFETCH_FEATURE_COUNT]) {
  double largest = 0.0, needed = 0.0, ratio = 0.0;
  uint32_t i, stalled = 0;
  const uint32_t known = h->count < MALV_PREFETCH_HISTORY ? h->count : MALV_PREFETCH_HISTORY;
  for (i = 0; i < known; ++i) {
    const double s = h->stall_steps[i];
    if (s > largest) largest = s;
    if (h->needed[i] > needed) needed = h->needed[i];
    if (s > 0.0) ++stalled;
  }
  if (o->consumption_per_s > 0.0 && o->production_per_s > 0.0) {
    ratio = log(o->consumption_per_s / o->production_per_s);
    if (ratio > 4.0) ratio = 4.0;
    if (ratio < -4.0) ratio = -4.0;
  }
  out[0] = (float)log1p(malv_prefetch_stall_steps(o->consumer_stall_ns, o->consumption_per_s));
  out[1] = (float)log1p(largest);
  out[2] = (float)log1p(needed);
  out[3] = known > 0 ? (float)stalled / (float)known : 0.0f;
  out[4] = (float)ratio;
  out[5] = (float)log1p((double)h->calm);
  out[6] = (float)log1p((double)o->current_depth);
  out[7] = (float)log1p((double)depth);
  out[8] = (float)log1p(needed > (double)depth ? needed - (double)depth : 0.0);
}

/* How the policy turns the model's predictions for depths 1..count into a
 * depth: the one with the least predicted stall plus
 * MALV_PREFETCH_DEPTH_COST steps for each batch staged (staged batches hold
 * device memory: a deeper depth must buy at least that much less stall);
 * the shallower at a tie. count >= 1; returns 1..count, or 0 if a
 * prediction is NaN. */
#define MALV_PREFETCH_DEPTH_COST 0.01f

static inline uint32_t malv_prefetch_pick(const float* predicted, uint32_t count) {
  uint32_t d, best = 0;
  for (d = 0; d < count; ++d) {
    if (isnan(predicted[d])) return 0;
    if (predicted[d] + MALV_PREFETCH_DEPTH_COST * (float)d <
        predicted[best] + MALV_PREFETCH_DEPTH_COST * (float)best) {
      best = d;
    }
  }
  return best + 1;
}

#ifdef __cplusplus
}
#endif

#endif /* MALV_PREFETCH_FEATURES_H_ */
