/*
 * learned-sjf's model inputs and target, from one gpu_sched observation.
 *
 * One definition, used where the model runs (the learned-sjf policy of
 * malv_sched_basic, at decision time and when it learns from feedback) and
 * where it is trained offline (`malv sjf train`, from traces `malv sjf
 * record` wrote), so the model sees at run time exactly what it was trained
 * on. Plain C11, header only, no state.
 *
 *   float in[MALV_SJF_FEATURE_COUNT];
 *   malv_sjf_features(&observation, in);      // then model_infer(in) -> y
 *   double ns = malv_sjf_predicted_ns(y);     // the predicted run time
 *   // training target of an outcome: malv_sjf_target(outcome.run_ns)
 *
 *   [0]       log1p(est_flops) / 20, within [0, 4] (0 for NaN or <= 0)
 *   [1]       log1p(est_bytes) / 20, the same
 *   [2]       1 for a batch-class VM, 0 for latency
 *   [3..18]   one-hot of kernel_id mod 16 (0: not a kernel launch)
 *
 * The target is (ln(run_ns) - 12) / 4: about -1.5 for 1 us, 0 for 160 us,
 * 2.75 for 10 s, so plain gradient descent sees values near 1.
 */
#ifndef MALV_SJF_FEATURES_H_
#define MALV_SJF_FEATURES_H_

#include <math.h>
#include <stdint.h>

#include "malv/mlaas.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MALV_SJF_KERNEL_BUCKETS 16
#define MALV_SJF_FEATURE_COUNT (3 + MALV_SJF_KERNEL_BUCKETS)
/* Predictions are clamped to [1 ns, 10 s]. */
#define MALV_SJF_MIN_NS 1.0
#define MALV_SJF_MAX_NS 1e10

static inline float malv_sjf_target(int64_t run_ns) {
  const double ns = run_ns < 1 ? 1.0 : (double)run_ns;
  return (float)((log(ns) - 12.0) / 4.0);
}

/* The run time a model output y stands for, within [MALV_SJF_MIN_NS,
 * MALV_SJF_MAX_NS]; NaN stays NaN (the caller treats it as an error). */
static inline double malv_sjf_predicted_ns(float y) {
  double ns;
  if (isnan(y)) return (double)y;
  ns = exp(4.0 * (double)y + 12.0);
  if (ns < MALV_SJF_MIN_NS) ns = MALV_SJF_MIN_NS;
  if (ns > MALV_SJF_MAX_NS) ns = MALV_SJF_MAX_NS;
  return ns;
}

/* log1p(x) / 20 within [0, 4]: 0 for NaN or x <= 0, 4 from about 5e34 on
 * (so an estimate of infinity stays a finite input). */
static inline float malv_sjf_log_size(double x) {
  double v;
  if (!(x > 0.0)) return 0.0f;
  v = log1p(x) / 20.0;
  return (float)(v < 4.0 ? v : 4.0);
}

static inline void malv_sjf_features(const malv_gpu_sched_observation* o,
                                     float out[MALV_SJF_FEATURE_COUNT]) {
  int i;
  out[0] = malv_sjf_log_size(o->est_flops);
  out[1] = malv_sjf_log_size(o->est_bytes);
  out[2] = o->priority_class == MALV_PRIORITY_BATCH ? 1.0f : 0.0f;
  for (i = 0; i < MALV_SJF_KERNEL_BUCKETS; ++i) out[3 + i] = 0.0f;
  out[3 + (int)(o->kernel_id % MALV_SJF_KERNEL_BUCKETS)] = 1.0f;
}

#ifdef __cplusplus
}
#endif

#endif /* MALV_SJF_FEATURES_H_ */
