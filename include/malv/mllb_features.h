/*
 * The learned load balancer's (MLLB's) model inputs, from one migration
 * candidate, and its decision rule.
 *
 * One definition, used where the model runs (the cpu_sched module `mllb`,
 * for each MALV_CPU_SCHED_MIGRATE observation) and where it is trained
 * (`malv mllb train`, from dumps of Linux's can_migrate_task() decisions,
 * src/train/mllb_dump.h), so the model sees at run time exactly what it was
 * trained on. Plain C11, header only, no state; it uses log10() (link
 * libm). A module includes it beside malv/mlaas.h:
 *
 *   float in[MALV_MLLB_FEATURE_COUNT];
 *   malv_mllb_features(&observation->migration, in);  // then model_infer(in) -> out[0]
 *   decision->migrate = malv_mllb_migrate(out[0]) ? MALV_CPU_MIGRATE_YES : MALV_CPU_MIGRATE_NO;
 *
 * The model (src/policies/cpu_sched/malv_mllb.safetensors) has one output,
 * trained towards the kernel's answer (0 refuse, 1 allow) with a mean
 * squared error, so the output estimates the probability that the kernel
 * allows the move; malv_mllb_migrate() says yes above 0.5 (a NaN is no).
 * The kernel never moves a running thread: for one, every input but
 * `running` is 0, and the model answers no (a module may also answer NO for
 * m->running without asking the model, which saves the inference).
 *
 * Why these inputs (docs/mllb.md has the data behind each): they follow
 * the kernel's own rule (can_migrate_task(): never a running task; a task
 * that migrate_degrades_locality() keeps on its preferred NUMA node, or that
 * task_hot() finds cache hot, only once the domain's failed attempts exceed
 * cache_nice_tries) and use only fields the training dump holds reliably
 * and the host knows for its own threads. Run-queue lengths, loads and the
 * buddy flag are not used: the dump read them at wrong offsets (garbage),
 * so a model trained on them would react to noise. No identities (thread
 * ids, cpu numbers): a model must carry to another boot and machine.
 *
 *   [0]  running           1: the thread is on a CPU now (the kernel never moves it);
 *                          then every other input is 0
 *   [1]  never_ran         1: since_ran_ns < 0 (it has not run since it was created)
 *   [2]  cache_hot         1: 0 <= since_ran_ns < MALV_MLLB_MIGRATION_COST_NS (task_hot())
 *   [3]  log_since_ran_us  log10(1 + since_ran_ns / 1000); 0 when it never ran
 *   [4]  dst_idle          1: idle_type == MALV_CPU_IDLE
 *   [5]  dst_not_idle      1: idle_type == MALV_CPU_NOT_IDLE
 *   [6]  dst_newly_idle    1: idle_type == MALV_CPU_NEWLY_IDLE
 *   [7]  same_node         1: both cores on one NUMA node
 *   [8]  prefer_src        1: its preferred NUMA node is the source's
 *   [9]  prefer_dst        1: its preferred NUMA node is the destination's
 *   [10] leaves_preferred  1: the move leaves its preferred node (other node, prefer_src,
 *                          not prefer_dst): migrate_degrades_locality() says "hot"
 *   [11] to_preferred      1: the move reaches its preferred node from another node:
 *                          migrate_degrades_locality() says "cold", move it
 *   [12] has_numa_faults   1: total_faults > 0 (the kernel tracks its NUMA locality;
 *                          kernel threads have no memory of their own and never fault)
 *   [13] fault_share       delta_faults / total_faults, in [-1, 1]; 0 without faults
 *   [14] extra_fails       1: nr_fails > cache_nice_tries (the kernel then moves even
 *                          hot tasks)
 */
#ifndef MALV_MLLB_FEATURES_H_
#define MALV_MLLB_FEATURES_H_

#include <math.h>
#include <stdint.h>

#include "malv/mlaas.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MALV_MLLB_FEATURE_COUNT 15
/* Linux's default sysctl_sched_migration_cost: a task that started running
 * less than this long ago is cache hot (task_hot()). */
#define MALV_MLLB_MIGRATION_COST_NS 500000
/* malv_mllb_migrate() says yes to a model output above this. */
#define MALV_MLLB_THRESHOLD 0.5f

static inline float malv_mllb_flag(int condition) { return condition ? 1.0f : 0.0f; }

static inline void malv_mllb_features(const malv_cpu_migration* m,
                                      float out[MALV_MLLB_FEATURE_COUNT]) {
  const int never_ran = m->since_ran_ns < 0;
  const int other_node = !m->same_node;
  double share = 0.0;
  int i;
  if (m->running) {
    /* can_migrate_task() refuses a running task before it looks at anything
     * else, so nothing else describes one: every running thread is the same
     * input, which the model has seen 419 times refused, rather than inputs
     * it would extrapolate to. */
    out[0] = 1.0f;
    for (i = 1; i < MALV_MLLB_FEATURE_COUNT; ++i) out[i] = 0.0f;
    return;
  }
  out[0] = 0.0f;
  out[1] = malv_mllb_flag(never_ran);
  out[2] = malv_mllb_flag(!never_ran && m->since_ran_ns < MALV_MLLB_MIGRATION_COST_NS);
  out[3] = never_ran ? 0.0f : (float)log10(1.0 + (double)m->since_ran_ns / 1000.0);
  out[4] = malv_mllb_flag(m->idle_type == MALV_CPU_IDLE);
  out[5] = malv_mllb_flag(m->idle_type == MALV_CPU_NOT_IDLE);
  out[6] = malv_mllb_flag(m->idle_type == MALV_CPU_NEWLY_IDLE);
  out[7] = malv_mllb_flag(m->same_node != 0);
  out[8] = malv_mllb_flag(m->prefer_src != 0);
  out[9] = malv_mllb_flag(m->prefer_dst != 0);
  out[10] = malv_mllb_flag(other_node && m->prefer_src && !m->prefer_dst);
  out[11] = malv_mllb_flag(other_node && m->prefer_dst && !m->prefer_src);
  out[12] = malv_mllb_flag(m->total_faults > 0);
  if (m->total_faults > 0) {
    share = (double)m->delta_faults / (double)m->total_faults;
    if (share < -1.0) share = -1.0;
    if (share > 1.0) share = 1.0;
  }
  out[13] = (float)share;
  out[14] = malv_mllb_flag(m->nr_fails > m->cache_nice_tries);
}

/* The decision on the model's one output: 1 move the thread, 0 leave it. */
static inline int malv_mllb_migrate(float model_output) {
  return model_output > MALV_MLLB_THRESHOLD;
}

#ifdef __cplusplus
}
#endif

#endif /* MALV_MLLB_FEATURES_H_ */
