#!/bin/sh
# `malv mlaas train` as a user runs it: a linear target learned to a held-out
# error far below the mean baseline, the model file loadable as an MLaaS
# model (malv-mlp-tool info), --json, and bad input refused with a message
# naming the file, line, column or width at fault (exit status 1; bad flags
# are usage errors, 2). No timing is asserted.
# Usage: mlaas_train.sh MALV MALV_MLP_TOOL
set -u
malv=$1
mlp_tool=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-mlaas-train-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# 600 rows of x0 in [0, 100), x1 in [-5, 5), y = 3 x0 - 2 x1 + 1.
awk 'BEGIN {
  srand(7); print "x0,x1,y";
  for (i = 0; i < 600; i++) { a = rand() * 100; b = rand() * 10 - 5; printf "%.4f,%.4f,%.4f\n", a, b, 3 * a - 2 * b + 1 }
}' >"$work/linear.csv"

# A run that learns: text output.
if ! "$malv" mlaas train --data "$work/linear.csv" --target y --model 2-16-1 \
  --out "$work/linear.safetensors" --epochs 40 --batch 32 --lr 0.005 >"$work/out" 2>"$work/err"; then
  fail "training on linear.csv failed"
  cat "$work/err" >&2
fi
for pattern in '^epoch +1/40  train mse [0-9.e+-]+  held-out mse' '^epoch +40/40' \
  '^held-out \(120 rows, last\): mse' '^baseline \(the training mean\) on the held-out rows: mse' \
  "^wrote $work/linear.safetensors"; do
  grep -Eq -- "$pattern" "$work/out" || fail "output has no line matching '$pattern'"
done
# Held-out mse under a hundredth of the baseline's (it is about a thousandth).
held=$(sed -n 's/^held-out .*: mse \([0-9.e+-]*\).*/\1/p' "$work/out")
base=$(sed -n 's/^baseline .*: mse \([0-9.e+-]*\).*/\1/p' "$work/out")
awk -v h="$held" -v b="$base" 'BEGIN { exit !(h != "" && b != "" && h < b / 100) }' ||
  fail "held-out mse '$held' is not under a hundredth of the baseline '$base'"
"$mlp_tool" info "$work/linear.safetensors" >"$work/info" 2>&1 ||
  fail "malv-mlp-tool cannot load the model: $(cat "$work/info")"
grep -q "2 inputs, 1 outputs" "$work/info" || fail "model info: $(cat "$work/info")"
grep -q "layer 1: 16 -> 1 identity" "$work/info" || fail "model info: $(cat "$work/info")"

# --json: one report, a shuffled split, picked features.
if "$malv" mlaas train --data "$work/linear.csv" --target y --features x1,x0 --model 2-4-1 \
  --out "$work/json.safetensors" --epochs 2 --split shuffled --holdout 0.25 --json \
  >"$work/json" 2>"$work/err"; then
  for key in '"holdout_rows": 150' '"features": \[' '"baseline_kind": "training mean"' \
    '"split": "shuffled"' '"epochs": \['; do
    grep -Eq -- "$key" "$work/json" || fail "--json has no $key"
  done
  grep -q '^epoch' "$work/json" && fail "--json printed progress lines"
else
  fail "--json run failed: $(cat "$work/err")"
fi

# expect_error STATUS PATTERN ARG... : `malv mlaas train ARG...` exits STATUS
# and its stderr matches PATTERN (grep -E), with no uncaught exception.
expect_error() {
  want=$1
  pattern=$2
  shift 2
  status=0
  "$malv" mlaas train "$@" >"$work/out" 2>"$work/err" </dev/null || status=$?
  if [ "$status" -ne "$want" ]; then
    fail "malv mlaas train $*: exit status $status, expected $want: $(cat "$work/err")"
  elif ! grep -Eq -- "$pattern" "$work/err"; then
    fail "malv mlaas train $*: message does not match '$pattern': $(cat "$work/err")"
  elif grep -Eq 'terminate called|Aborted|what\(\)' "$work/err"; then
    fail "malv mlaas train $*: died on an exception: $(cat "$work/err")"
  fi
  [ ! -e "$work/bad.safetensors" ] || fail "malv mlaas train $*: wrote a model anyway"
}
bad() { printf '%s\n' "$2" >"$work/$1.csv"; echo "$work/$1.csv"; }
out="--out $work/bad.safetensors"

expect_error 1 "malformed\.csv:4: column 2 \('x1'\): 'abc' is not a number" \
  --data "$(bad malformed 'x0,x1,y
1,2,3
4,5,6
7,abc,9')" --target y --model 2-4-1 $out
expect_error 1 "nan\.csv:3: column 3 \('y'\): 'nan' is not a finite number" \
  --data "$(bad nan 'x0,x1,y
1,2,3
4,5,nan')" --target y --model 2-4-1 $out
expect_error 1 "fields\.csv:3: 2 fields, the header names 3 columns" \
  --data "$(bad fields 'x0,x1,y
1,2,3
4,5')" --target y --model 2-4-1 $out
expect_error 1 "no column 'z'; its columns are: x0, x1, y" \
  --data "$work/linear.csv" --target z --model 2-4-1 $out
expect_error 1 "model 8-32-1 takes 8 inputs, but there are 2 features \(x0, x1\)" \
  --data "$work/linear.csv" --target y --model 8-32-1 $out
expect_error 1 "empty\.csv: no data rows after the header line" \
  --data "$(bad empty 'x0,x1,y')" --target y --model 2-4-1 $out
expect_error 1 "xent\.csv:3: column 'y': 0\.5 is not a class" \
  --data "$(bad xent 'x0,x1,y
1,2,1
4,5,0.5')" --target y --loss xent --model 2-4-2 --holdout 0 $out
expect_error 1 "missing\.csv" --data "$work/missing.csv" --target y --model 2-4-1 $out
expect_error 1 "--out $work/none/m\.safetensors: no directory" --data "$work/linear.csv" \
  --target y --model 2-4-1 --out "$work/none/m.safetensors"
expect_error 2 "--holdout.*out of range" --data "$work/linear.csv" --target y --model 2-4-1 \
  --holdout 1 $out
expect_error 2 "--loss" --data "$work/linear.csv" --target y --model 2-4-1 --loss l1 $out
expect_error 2 "--out.*required" --data "$work/linear.csv" --target y --model 2-4-1

[ "$failures" -eq 0 ] || exit 1
echo "malv mlaas train: all checks passed"
