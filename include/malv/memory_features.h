/*
 * The learned memory policy's model inputs, from one memory observation.
 *
 * One definition, used where the model runs (the `learned` policy of
 * malv_memory_learned, at decision time) and where it is trained (`malv
 * memory train`, from recorded access traces), so that the model sees at run
 * time exactly what it was trained on. Plain C11, header only, no state: a
 * module includes it beside malv/mlaas.h.
 *
 *   float in[MALV_MEMORY_FEATURE_COUNT];
 *   malv_memory_features(&observation, in);   // then model_infer(in) -> out[0]
 *   // out[0] estimates malv_memory_distance_target(ops until the next use)
 *
 * The idea: a training step is a cycle, so a buffer used u times per step
 * repeats its reuse gaps with period u, and its next gap is the gap u uses
 * back (reuse_gaps[u - 1]). For each period L = 1..4 the features give the
 * use that period predicts (that gap minus the ops since the last use) and
 * how well the history fits that period (the gaps L apart differ by this
 * fraction of their sum); the model learns which to believe. All distances
 * are log1p of ops, so the model works on any step length.
 *
 *   [0]      log1p(ops_since_use)
 *   [1..4]   log1p(max(reuse_gaps[L-1] - ops_since_use, 0)), L = 1..4; 0 if unknown
 *   [5..8]   mismatch of period L: sum |gap[i] - gap[i+L]| / sum gap[i], i < L,
 *            clamped to [0, 2]; 2 when fewer than 2L gaps are known
 *   [9]      log1p(reuse_gaps[0]); 0 if unknown
 */
#ifndef MALV_MEMORY_FEATURES_H_
#define MALV_MEMORY_FEATURES_H_

#include <math.h>
#include <stdint.h>

#include "malv/mlaas.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MALV_MEMORY_FEATURE_COUNT 10
#define MALV_MEMORY_MAX_PERIOD 4
/* The distance a buffer never used again is trained to: past any step. */
#define MALV_MEMORY_FAR_OPS 1000000u

/* What the model is trained to output for a next use `ops` ops ahead. */
static inline float malv_memory_distance_target(uint64_t ops) {
  if (ops > MALV_MEMORY_FAR_OPS) ops = MALV_MEMORY_FAR_OPS;
  return (float)log1p((double)ops);
}

static inline void malv_memory_features(const malv_memory_observation* o,
                                        float out[MALV_MEMORY_FEATURE_COUNT]) {
  const double age = (double)o->ops_since_use;
  const uint32_t known =
      o->gap_count < MALV_MEMORY_GAP_HISTORY ? o->gap_count : MALV_MEMORY_GAP_HISTORY;
  uint32_t period;
  out[0] = (float)log1p(age);
  for (period = 1; period <= MALV_MEMORY_MAX_PERIOD; ++period) {
    double predicted = 0.0;
    double mismatch = 2.0;
    if (known >= period) {
      predicted = (double)o->reuse_gaps[period - 1] - age;
      if (predicted < 0.0) predicted = 0.0;
      predicted = log1p(predicted);
    }
    if (known >= 2 * period) {
      double differ = 0.0;
      double sum = 0.0;
      uint32_t i;
      for (i = 0; i < period; ++i) {
        const double a = (double)o->reuse_gaps[i];
        const double b = (double)o->reuse_gaps[i + period];
        differ += a > b ? a - b : b - a;
        sum += a;
      }
      mismatch = sum > 0.0 ? differ / sum : 2.0;
      if (mismatch > 2.0) mismatch = 2.0;
    }
    out[period] = (float)predicted;
    out[MALV_MEMORY_MAX_PERIOD + period] = (float)mismatch;
  }
  out[9] = known >= 1 ? (float)log1p((double)o->reuse_gaps[0]) : 0.0f;
}

#ifdef __cplusplus
}
#endif

#endif /* MALV_MEMORY_FEATURES_H_ */
