#!/bin/sh
# Trains the learned load balancer's model (the cpu_sched module `mllb`) on
# the dump of Linux's can_migrate_task() decisions in ../shared/data/mllb
# (raw_tag1.csv, 1,091 rows; README.md there) with `malv mllb train` and its
# defaults: all rows, a stratified fifth held out (seed 1), mlp 15-16-1,
# 60 epochs, batch 32, Adam lr 0.003, 5-fold cross-validation reported.
# Deterministic: the same seed gives the same file. The shipped model,
# src/policies/cpu_sched/malv_mllb.safetensors, was made by this script
# with its defaults (docs/mllb.md).
#
# Usage: scripts/train-mllb-model.sh [OUT.safetensors]
# Environment: MALV (default build/release/src/cli/malv), DATA (default
# ../shared/data/mllb/raw_tag1.csv beside this source tree), SEED (default 1).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/src/policies/cpu_sched/malv_mllb.safetensors}
malv=${MALV:-$root/build/release/src/cli/malv}
data=${DATA:-$(cd "$root/.." && pwd)/shared/data/mllb/raw_tag1.csv}
seed=${SEED:-1}
[ -x "$malv" ] || { echo "no malv at $malv (build first, or set MALV)" >&2; exit 1; }
[ -f "$data" ] || { echo "no dump at $data (set DATA)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$malv" mllb train "$data" --out "$out" --seed "$seed" --folds 5
