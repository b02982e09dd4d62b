#!/bin/sh
# `malv prefetch record` and `malv prefetch train` as a user runs them, small:
# a record of every decision period (the header, one line per period, depths
# within [1, max_depth]), a model trained on it that the learned policy can
# load (malv-mlp-tool info: 9 inputs, 1 output), the held-out comparison in
# --json, and bad records refused with the file, line and column at fault.
# `malv bench mlaas --prefetch-only --quick --json` prints the prefetch keys.
# No timing is asserted.
# Usage: prefetch_record_train.sh MALV MALV_MLP_TOOL
set -u
malv=$1
mlp_tool=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-prefetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

header=run,stream_id,current_depth,max_depth,consumption_per_s,production_per_s,consumer_stall_ns,depth_used,stall_next_ns

if ! "$malv" prefetch record --out "$work/a.csv" --runs 2 --steps 40 --seed 3 >"$work/out" 2>"$work/err"; then
  fail "prefetch record failed"
  cat "$work/err" >&2
fi
[ "$(head -n 1 "$work/a.csv")" = "$header" ] || fail "record header: $(head -n 1 "$work/a.csv")"
# 40 steps: a decision every 8 batches, each but the first reports its
# predecessor's outcome: 4 periods a run.
periods=$(($(wc -l <"$work/a.csv") - 1))
[ "$periods" -ge 4 ] || fail "record has $periods periods"
grep -q "wrote $periods periods of 2 runs to $work/a.csv" "$work/out" ||
  fail "no 'wrote' line: $(cat "$work/out")"
awk -F, 'NR > 1 && ($8 < 1 || $8 > $4 || ($1 != 0 && $1 != 1)) { bad = 1 } END { exit bad }' "$work/a.csv" ||
  fail "a depth outside [1, max_depth] or a run other than 0, 1"

if ! "$malv" prefetch train "$work/a.csv" --out "$work/m.safetensors" --epochs 2 --holdout 0.5 \
  --json >"$work/train.json" 2>"$work/err"; then
  fail "prefetch train failed"
  cat "$work/err" >&2
fi
for key in '"holdout_mse"' '"baseline_mse"' '"comparison"' '"learned"' '"adaptive"' '"fixed"' \
  '"on": "held-out"' '"stall_steps"' '"matched"'; do
  grep -q -- "$key" "$work/train.json" || fail "train --json has no $key"
done
"$mlp_tool" info "$work/m.safetensors" >"$work/info" 2>&1 || fail "the model does not load"
grep -q "9 inputs, 1 outputs" "$work/info" || fail "model shape: $(cat "$work/info")"

# Bad records: the file, line and column named; exit status 1.
expect_error() {
  what=$1
  pattern=$2
  shift 2
  "$malv" prefetch train "$@" --out "$work/bad.safetensors" >"$work/out" 2>"$work/err"
  status=$?
  [ "$status" -eq 1 ] || fail "$what: exit status $status, expected 1"
  grep -Eq -- "$pattern" "$work/err" || fail "$what: no '$pattern' in: $(cat "$work/err")"
}
printf '%s\n0,0,2,8,100,400,0,9,0\n' "$header" >"$work/deep.csv"
expect_error "depth beyond max_depth" 'deep.csv:2: depth_used 9 must be in \[1, max_depth 8\]' \
  "$work/deep.csv"
printf '%s\n0,0,2,8,100,400,-5,2,0\n' "$header" >"$work/neg.csv"
expect_error "negative stall" 'neg.csv:2: column consumer_stall_ns must be a whole number' \
  "$work/neg.csv"
printf 'run,stream_id\n0,0\n' >"$work/cols.csv"
expect_error "missing columns" "current_depth" "$work/cols.csv"
expect_error "missing file" "no-such.csv" "$work/no-such.csv"

out=$("$malv" bench mlaas --prefetch-only --quick --json 2>"$work/err") || {
  fail "bench mlaas --prefetch-only --quick failed"
  cat "$work/err" >&2
}
for key in prefetch_stall_adaptive_over_fixed prefetch_stall_learned_over_fixed \
  prefetch_fixed_stall_ms prefetch_learned_mean_depth prefetch_learned_fallbacks; do
  printf '%s\n' "$out" | grep -q "\"$key\"" || fail "bench --json has no $key"
done

[ "$failures" -eq 0 ] || exit 1
echo "prefetch record, train and bench: ok"
