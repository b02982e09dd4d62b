/* The weight and placement the `class` rule gives a VM, shared by the cpu_sched modules
 * (malv_cpu_share_basic's class and gpu-aware, malv_cpu_mllb's shares).
 * Header only, C ABI only. */
#ifndef MALV_POLICIES_CPU_SCHED_CLASS_WEIGHT_H_
#define MALV_POLICIES_CPU_SCHED_CLASS_WEIGHT_H_

#include <malv/mlaas.h>

/* A latency-class VM gets this many times the default weight, so its guest
 * and the host threads serving it run as soon as they wake. */
#define MALV_CPU_LATENCY_WEIGHT_FACTOR 8.0

/* Latency: 8x the default; batch: the default times its compute weight. */
static inline double malv_cpu_class_weight(const malv_cpu_sched_observation* o) {
  if (o->priority_class == MALV_PRIORITY_LATENCY)
    return MALV_CPU_LATENCY_WEIGHT_FACTOR * MALV_CPU_WEIGHT_DEFAULT;
  return MALV_CPU_WEIGHT_DEFAULT * (o->vm_weight > 0 ? o->vm_weight : 1.0);
}

/* Latency: a core of its own (the host gives one while another is left for
 * the rest); batch: any core. A dedicated core cut the inference VM's p99
 * more than any weight did in `malv bench cpu` (docs/benchmarks.md). */
static inline uint32_t malv_cpu_class_placement(const malv_cpu_sched_observation* o) {
  return o->priority_class == MALV_PRIORITY_LATENCY ? MALV_CPU_PLACE_DEDICATED : MALV_CPU_PLACE_ANY;
}

/* A weight rounded into the ABI's range. */
static inline uint32_t malv_cpu_clamp_weight(double weight) {
  if (!(weight >= (double)MALV_CPU_WEIGHT_MIN)) return MALV_CPU_WEIGHT_MIN;
  if (weight > (double)MALV_CPU_WEIGHT_MAX) return MALV_CPU_WEIGHT_MAX;
  return (uint32_t)(weight + 0.5);
}

#endif /* MALV_POLICIES_CPU_SCHED_CLASS_WEIGHT_H_ */
