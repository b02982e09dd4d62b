#!/bin/sh
# `malv memory train` and `malv memory replay --model` as a user runs them:
# traces of a periodic training loop written here by an independent encoder
# of the documented format (src/vgpu/access_trace.h), a model trained on one
# run, replayed on another under `learned` against lru and Belady; the rows
# as CSV that `malv mlaas train` reads; bad input refused naming the file or
# the widths (exit 1; bad flags are usage errors, 2). No timing is asserted.
# Usage: memory_train_cli.sh MALV
set -u
malv=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-memory-train-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# training_loop STEPS LAYERS FILE: per layer weights, their gradient and
# optimizer state, activations and their gradients; each step a forward op
# a layer, the loss, two backward ops a layer and an optimizer op a layer.
/usr/bin/python3 - "$work" <<'PY' || { echo "FAIL: could not write the traces" >&2; exit 1; }
import struct, sys
READ, WRITE, ALLOC, FREE = 0, 1, 2, 3
def training_loop(steps, layers, path):
    recs, sizes, op = [], {}, [0]
    def new(size):
        i = len(sizes) + 1
        sizes[i] = size
        recs.append((op[0], i, ALLOC))
        return i
    def do(reads, writes):
        for b in reads: recs.append((op[0], b, READ))
        for b in writes: recs.append((op[0], b, WRITE))
        op[0] += 1
    param = lambda i: (64 + 32 * (i % 3)) * 1024
    act = lambda i: (48 + 16 * (i % 2)) * 1024
    W = [new(param(i)) for i in range(layers)]
    M = [new(param(i)) for i in range(layers)]
    dW = [new(param(i)) for i in range(layers)]
    A = [new(act(i)) for i in range(layers + 1)]
    G = [new(act(i)) for i in range(layers + 1)]
    for s in range(steps):
        do([], [A[0]])
        for i in range(layers): do([W[i], A[i]], [A[i + 1]])
        do([A[layers]], [G[layers]])
        for i in reversed(range(layers)):
            do([W[i], G[i + 1]], [G[i]])
            do([A[i], G[i + 1]], [dW[i]])
        for i in range(layers): do([dW[i]], [W[i], M[i]])
    for b in W + M + dW + A + G: recs.append((op[0], b, FREE))
    with open(path, "wb") as f:
        f.write(b"MALVTRC\0" + struct.pack("<II", 1, 40))
        for t, (o, b, kind) in enumerate(recs):
            f.write(struct.pack("<QQQqB7x", o, b, sizes[b], t * 1000, kind))
training_loop(40, 6, sys.argv[1] + "/train.trace")
training_loop(12, 6, sys.argv[1] + "/run.trace")
PY

# Train: text output, the rows as CSV too.
if ! "$malv" memory train "$work/train.trace" --out "$work/m.safetensors" --csv "$work/rows.csv" \
  >"$work/out" 2>"$work/err"; then
  fail "memory train failed: $(cat "$work/err")"
fi
for pattern in "^$work/train.trace: 1040 ops, [0-9]+ samples; [0-9]+ rows from [0-9]+ ops" \
  "^wrote the rows to $work/rows.csv" '^epoch +1/20  train mse [0-9.e+-]+  held-out mse' \
  '^epoch +20/20' '^model mlp:10-32-32-1 \(mse loss\), features log_ops_since_use,.*,log_last_gap -> log_next_use_distance' \
  '^held-out \([0-9]+ rows, the last\): mse' '^baseline \(the training mean\) on the held-out rows: mse' \
  '^eviction order on the held-out rows \([0-9]+ ops, [0-9]+ pairs\): pairs ordered like the true next uses 0\.9' \
  "^wrote $work/m.safetensors"; do
  grep -Eq -- "$pattern" "$work/out" || fail "train output has no line matching '$pattern': $(cat "$work/out")"
done
held=$(sed -n 's/^held-out .*: mse \([0-9.e+-]*\).*/\1/p' "$work/out")
base=$(sed -n 's/^baseline .*: mse \([0-9.e+-]*\).*/\1/p' "$work/out")
awk -v h="$held" -v b="$base" 'BEGIN { exit !(h != "" && b != "" && h < b) }' ||
  fail "held-out mse '$held' is not under the baseline's '$base'"
head -1 "$work/rows.csv" | grep -q '^log_ops_since_use,.*,log_last_gap,log_next_use_distance$' ||
  fail "rows.csv header: $(head -1 "$work/rows.csv")"

# The CSV is what `malv mlaas train` reads (and a model of other widths).
"$malv" mlaas train --data "$work/rows.csv" --target log_next_use_distance \
  --features log_ops_since_use,log_last_gap --model 2-4-1 --epochs 1 \
  --out "$work/narrow.safetensors" >"$work/out" 2>&1 || fail "mlaas train on rows.csv: $(cat "$work/out")"

# Replay with the model: `all` adds learned; far below lru, within 1.3x Belady.
"$malv" memory replay "$work/run.trace" --capacity-bytes 1677722 --model "$work/m.safetensors" \
  --json >"$work/replay.json" 2>"$work/err" || fail "replay --model failed: $(cat "$work/err")"
/usr/bin/python3 - "$work/replay.json" <<'PY' || fail "replay: $(cat "$work/replay.json")"
import json, sys
out = json.load(open(sys.argv[1]))
got = {r["policy"]: r for r in out["results"]}
assert list(got) == ["lru", "lookahead", "belady", "learned"], list(got)
assert out["model"].endswith("m.safetensors"), out["model"]
lru, belady, learned = (got[p]["bytes_moved"] for p in ("lru", "belady", "learned"))
assert belady > 0 and learned < 0.75 * lru and learned <= 1.3 * belady, (lru, belady, learned)
PY
"$malv" memory replay "$work/run.trace" --capacity-mib 1.6 --policy learned \
  --model "$work/m.safetensors" >"$work/table" 2>&1 || fail "replay --policy learned: $(cat "$work/table")"
grep -Eq '^learned +[0-9]+' "$work/table" || fail "no learned row: $(cat "$work/table")"
grep -Eq '^lru ' "$work/table" && fail "--policy learned printed lru too: $(cat "$work/table")"

# --json: one report.
if "$malv" memory train "$work/train.trace" --out "$work/j.safetensors" --max-rows 5000 --epochs 2 \
  --json >"$work/json" 2>"$work/err"; then
  /usr/bin/python3 - "$work/json" <<'PY' || fail "train --json: $(cat "$work/json")"
import json, sys
out = json.load(open(sys.argv[1]))
assert 0 < out["rows"] <= 5000 and out["ops"] == 1040, out
assert out["train_rows"] + out["holdout_rows"] == out["rows"], out
assert out["holdout_mse"] is not None and out["baseline_mse"] > 0, out
assert out["order"]["on"] == "held-out rows" and out["order"]["pairs"] > 0, out
assert out["target"] == "log_next_use_distance" and len(out["features"]) == 10, out
PY
else
  fail "train --json failed: $(cat "$work/err")"
fi

# expect_error STATUS PATTERN ARG... : `malv memory ARG...` exits STATUS with
# stderr matching PATTERN (grep -E), and no uncaught exception.
expect_error() {
  want=$1
  pattern=$2
  shift 2
  status=0
  "$malv" memory "$@" >"$work/out" 2>"$work/err" </dev/null || status=$?
  if [ "$status" -ne "$want" ]; then
    fail "malv memory $*: exit status $status, expected $want: $(cat "$work/err")"
  elif ! grep -Eq -- "$pattern" "$work/err"; then
    fail "malv memory $*: message does not match '$pattern': $(cat "$work/err")"
  elif grep -Eq 'terminate called|Aborted|what\(\)' "$work/err"; then
    fail "malv memory $*: died on an exception: $(cat "$work/err")"
  fi
  [ ! -e "$work/bad.safetensors" ] || fail "malv memory $*: wrote a model anyway"
}
head -c 100 "$work/train.trace" >"$work/short.trace"
expect_error 1 "short\.trace: record 2: truncated: 4 of 40 bytes" train "$work/short.trace" --out "$work/bad.safetensors"
expect_error 1 "missing\.trace" train "$work/train.trace" "$work/missing.trace" --out "$work/bad.safetensors"
expect_error 1 "model 8-16-1 takes 8 inputs, but there are 10 features" \
  train "$work/train.trace" --model 8-16-1 --out "$work/bad.safetensors"
expect_error 1 "$work/none/m\.safetensors: no directory" train "$work/train.trace" \
  --out "$work/none/m.safetensors"
expect_error 2 "--out.*required" train "$work/train.trace"
expect_error 2 "--max-rows" train "$work/train.trace" --max-rows -1 --out "$work/bad.safetensors"
expect_error 1 "narrow\.safetensors: the model takes 2 inputs and gives 1 outputs; .* takes 10 inputs" \
  replay "$work/run.trace" --capacity-mib 2 --model "$work/narrow.safetensors"
expect_error 1 "missing\.safetensors" replay "$work/run.trace" --capacity-mib 2 \
  --model "$work/missing.safetensors"
expect_error 2 "--model \(for --policy learned\)" replay "$work/run.trace" --capacity-mib 2 \
  --policy learned

"$malv" memory --help | grep -q "train" || fail "malv memory --help does not list train"
"$malv" memory train --help | grep -q "Example" || fail "malv memory train --help has no example"
[ "$failures" -eq 0 ] || exit 1
echo "malv memory train: all checks passed"
