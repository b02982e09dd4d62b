#!/bin/sh
# Trains the learned memory policy's model (malv_memory_learned) from access
# traces of real training runs, recorded here by a host of our own:
#   1. `malv serve --memory-trace-dir` with one oversubscribed VM per run
#      (resident 64 MiB, virtual 1 GiB: the memory manager runs and records
#      every op's buffers; nothing needs to spill for the trace to be right,
#      since the ops a guest issues do not depend on the quota);
#   2. `malv guest train` on Fashion-MNIST for each model and optimizer below
#      (none of them is the model `malv bench memory` measures, so the
#      benchmark's learned rows are on data the model was not trained on);
#   3. `malv memory train` on those traces, writing the model file.
# The shipped model, src/policies/memory/malv_memory_learned.safetensors, was
# made by this script with its defaults (docs/training.md).
#
# Usage: scripts/train-memory-model.sh [OUT.safetensors]
# Environment: MALV (default build/release/src/cli/malv), STEPS (default 30
# training steps per run), DATA_DIR (default the Fashion-MNIST directory).
set -eu
out=${1:-src/policies/memory/malv_memory_learned.safetensors}
malv=${MALV:-build/release/src/cli/malv}
steps=${STEPS:-30}
data_dir=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
[ -x "$malv" ] || { echo "no malv at $malv (build first, or set MALV)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/malv-memory-model-XXXXXX")
host=""
cleanup() {
  if [ -n "$host" ]; then
    kill -TERM "$host" 2>/dev/null || true
    wait "$host" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Models x optimizers: different depths, widths and per-step use counts
# (Adam touches each parameter's m and v, SGD does not).
runs="mlp:784-256-256-10:adam mlp:784-1024-512-10:adam mlp:784-300-300-300-10:sgd
mlp:784-128-128-128-128-128-128-10:adam mlp:784-512-256-128-64-10:sgd mlp:784-64-10:adam"

config="$work/host.toml"
: >"$config"
i=0
for run in $runs; do
  i=$((i + 1))
  printf '[[vm]]\nname = "trace-%d"\ntoken = "t"\nmemory_mib = 64\nvirtual_memory_mib = 1024\n\n' \
    "$i" >>"$config"
done
mkdir -p "$work/traces"
"$malv" serve --config "$config" --backend cpu --socket "$work/malv.sock" \
  --admin-socket "$work/admin.sock" --state-dir "$work/state" \
  --memory-trace-dir "$work/traces" --spill-link-gbps 0 >"$work/serve.out" 2>"$work/serve.err" &
host=$!
tries=0
until grep -q '^ready ' "$work/serve.out" 2>/dev/null; do
  tries=$((tries + 1))
  if [ $tries -ge 600 ] || ! kill -0 $host 2>/dev/null; then
    echo "the host did not start:" >&2
    cat "$work/serve.err" >&2
    exit 1
  fi
  sleep 0.1
done

i=0
for run in $runs; do
  i=$((i + 1))
  model=${run%:*}
  optimizer=${run##*:}
  echo "recording trace-$i: $model, $optimizer, $steps steps" >&2
  "$malv" guest train --socket "$work/malv.sock" --vm "trace-$i" --token t --model "$model" \
    --optimizer "$optimizer" --epochs 1 --max-steps "$steps" --log-every 0 \
    --data-dir "$data_dir" >"$work/train-$i.out" 2>&1 || {
    cat "$work/train-$i.out" >&2
    exit 1
  }
done
kill -TERM "$host"
wait "$host" || true
host=""

"$malv" memory train "$work"/traces/*.trace --out "$out"
echo "wrote $out" >&2
