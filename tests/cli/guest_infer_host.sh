#!/bin/sh
# `malv guest infer` against a host: a checkpoint from `malv guest train
# --native --progress-json`, then inference as a VM over the host's socket
# with --json and a request count, then the same natively as text; and a
# missing checkpoint is a clear error.
# Usage: guest_infer_host.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

"$malv" guest train --native --max-steps 40 --log-every 10 --checkpoint "$work/model.ckpt" \
  --progress-json >"$work/train.out" 2>"$work/train.err"
grep -v '^{' "$work/train.out" && fail "--progress-json printed a line that is not JSON" "$work/train.out"
grep -q '"event":"progress"' "$work/train.out" || fail "no progress event" "$work/train.out"
grep -q '"event":"done".*"test_accuracy"' "$work/train.out" || fail "no done event" "$work/train.out"

start_host --open --backend cpu

"$malv" guest infer --socket "$work/malv.sock" --vm infer --checkpoint "$work/model.ckpt" \
  --rate 200 --requests 40 --batch 8 --report-every 0.05 --json >"$work/infer.out" 2>"$work/infer.err" ||
  fail "guest infer against the host failed" "$work/infer.err"
grep -v '^{' "$work/infer.out" && fail "--json printed a line that is not JSON" "$work/infer.out"
grep -q '"event":"start"' "$work/infer.out" || fail "no start event" "$work/infer.out"
grep -q '"event":"done".*"requests":40' "$work/infer.out" || fail "no done event with 40 requests" "$work/infer.out"
for key in p50_ms p90_ms p99_ms max_ms rate accuracy; do
  tail -n 1 "$work/infer.out" | grep -q "\"$key\"" || fail "the final report has no $key" "$work/infer.out"
done

"$malv" guest infer --native --checkpoint "$work/model.ckpt" --rate 100 --duration 0.5 \
  --arrivals fixed >"$work/native.out" 2>&1 || fail "guest infer --native failed" "$work/native.out"
grep -q '^total .*p99' "$work/native.out" || fail "no final text report" "$work/native.out"

if "$malv" guest infer --native --checkpoint "$work/missing.ckpt" --requests 1 >"$work/missing.out" 2>&1; then
  fail "a missing checkpoint was accepted" "$work/missing.out"
fi
grep -q 'missing.ckpt' "$work/missing.out" || fail "the error does not name the checkpoint" "$work/missing.out"
