#!/bin/sh
# `malv bench mlaas --quick --json` runs every phase and prints every headline
# figure. Timings are never asserted (they depend on the machine).
# Usage: bench_mlaas_quick.sh <path to malv>
set -e
out=$("$1" bench mlaas --quick --json)
for key in decide_ns_learned_sjf decide_ns_lru linnos_accel_b4096_per_s mllb_cpu_b1_per_s \
  linnos_crossover_batch mllb_crossover_batch hot_swap_us \
  learned_sjf_vs_fifo_mean_completion_ratio learned_sjf_max_completion_ms \
  inference_batched_over_unbatched_1 inference_batched_over_unbatched_8 \
  inference_batched_over_unbatched_64 inference_batched_over_unbatched_512 \
  inference_blocking_batched_over_unbatched_64 \
  linnos_blocking_callers64_batched_per_s linnos_blocking_callers64_unbatched_per_s \
  linnos_blocking_callers512_batched_p99_us mllb_blocking_callers512_unbatched_p99_us \
  mllb_blocking_batched_over_unbatched_64 \
  linnos_async_callers64_batched_per_s linnos_async_callers64_unbatched_per_s \
  linnos_async_callers64_batched_p50_us linnos_async_callers512_batched_p99_us \
  mllb_async_callers512_unbatched_p99_us linnos_async_callers64_rows_per_run \
  linnos_async_callers64_batched_per_cpu_s \
  linnos_async_batched_over_unbatched_64 mllb_async_batched_over_unbatched_512 \
  linnos_calibrated_crossover_batch \
  mllb_calibrated_crossover_batch calibrated_crossover \
  prefetch_stall_adaptive_over_fixed prefetch_stall_learned_over_fixed \
  learned_sjf_cold_over_fifo sjf_learned_cold_fallbacks sjf_learned_cold_failures sjf_learned_cold_late mixed_policy_jain; do
  if ! printf '%s\n' "$out" | grep -q "\"$key\""; then
    echo "malv bench mlaas --json: no figure $key" >&2
    printf '%s\n' "$out" >&2
    exit 1
  fi
done
