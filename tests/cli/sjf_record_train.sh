#!/bin/sh
# `malv sjf record` and `malv sjf train` as a user runs them: a recorded trace
# holds real outcomes (every run_ns > 0, the kernels the mix runs), a model
# trained on it loads as an MLaaS model of 19 inputs and 1 output and runs
# learned-sjf in `malv bench mlaas --sjf-only --quick`; bad input is refused
# with a message naming the file and line (exit 1), bad flags are usage
# errors (2). No timing is asserted.
# Usage: sjf_record_train.sh MALV MALV_MLP_TOOL
set -u
malv=$1
mlp_tool=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-sjf-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

if ! "$malv" sjf record --out "$work/trace.csv" --bursts 30 >"$work/out" 2>"$work/err"; then
  fail "sjf record failed"
  cat "$work/err" >&2
fi
grep -q "outcomes" "$work/out" || fail "sjf record did not say what it wrote"
head -1 "$work/trace.csv" | grep -qx "kernel_id,priority_class,est_flops,est_bytes,queue_id,waited_ns,run_ns" ||
  fail "trace header: $(head -1 "$work/trace.csv")"
rows=$(($(wc -l <"$work/trace.csv") - 1))
[ "$rows" -ge 30 ] || fail "only $rows outcomes in the trace"
awk -F, 'NR > 1 && !($7 > 0) { bad = 1 } END { exit bad }' "$work/trace.csv" ||
  fail "a run_ns that is not > 0"
for kernel in 0 2 3 7; do  # memset, gemm, add, relu
  awk -F, -v k="$kernel" 'NR > 1 && $1 == k { found = 1 } END { exit !found }' "$work/trace.csv" ||
    fail "no outcome of kernel $kernel"
done

if ! "$malv" sjf train "$work/trace.csv" --out "$work/sjf.safetensors" --epochs 5 --json \
  >"$work/train.json" 2>"$work/err"; then
  fail "sjf train failed"
  cat "$work/err" >&2
fi
for key in holdout_mse mean_mse model_over_mean_mse train_rows holdout_rows; do
  grep -q "\"$key\"" "$work/train.json" || fail "sjf train --json: no $key"
done
"$mlp_tool" info "$work/sjf.safetensors" >"$work/info" 2>&1 || fail "the model does not load"
grep -q "19 inputs, 1 outputs" "$work/info" || fail "the model does not take 19 inputs: $(cat "$work/info")"

if ! MALV_LEARNED_SJF_MODEL="$work/sjf.safetensors" "$malv" bench mlaas --sjf-only --quick --json \
  >"$work/bench.json" 2>"$work/err"; then
  fail "bench mlaas --sjf-only with the trained model failed"
  cat "$work/err" >&2
fi
grep -q '"learned_sjf_cold_over_fifo"' "$work/bench.json" || fail "no learned_sjf_cold_over_fifo"
# A decision past its budget on a busy or sanitized machine is not the
# model's fault: only errors and out-of-range answers count here.
grep -q '"sjf_learned_cold_failures": 0' "$work/bench.json" || fail "learned-sjf failed"
grep -q '"sjf_learned_cold_late"' "$work/bench.json" || fail "no sjf_learned_cold_late"

# Bad input: exit 1 and the file and line named.
"$malv" sjf train "$work/none.csv" --out "$work/x.safetensors" >/dev/null 2>"$work/err"
[ $? -eq 1 ] || fail "a missing trace is not exit 1"
grep -q "none.csv" "$work/err" || fail "a missing trace is not named: $(cat "$work/err")"
{ head -3 "$work/trace.csv"; echo "2,1,100,100,1,0,0"; } >"$work/zero.csv"
"$malv" sjf train "$work/zero.csv" --out "$work/x.safetensors" >/dev/null 2>"$work/err"
[ $? -eq 1 ] || fail "run_ns 0 is not exit 1"
grep -q "zero.csv:4: run_ns 0 must be > 0" "$work/err" || fail "run_ns 0: $(cat "$work/err")"
"$malv" sjf train "$work/trace.csv" --out "$work/nodir/x.safetensors" >/dev/null 2>"$work/err"
[ $? -eq 1 ] || fail "an output in a missing directory is not exit 1"
"$malv" sjf train "$work/trace.csv" --out "$work/x.safetensors" --model 4-8-1 >/dev/null 2>"$work/err"
[ $? -eq 1 ] || fail "a model of 4 inputs is not exit 1"
"$malv" sjf record --out "$work/y.csv" --streams 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--streams 0 is not a usage error"
"$malv" sjf record --out "$work/y.csv" --mix other >/dev/null 2>&1
[ $? -eq 2 ] || fail "--mix other is not a usage error"

[ "$failures" -eq 0 ] || exit 1
echo "sjf record/train: ok"
