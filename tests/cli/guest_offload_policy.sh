#!/bin/sh
# A guest selecting its own policies (`--policy`) within the allow-list the
# admin sets (`malv policy allow`), and training from the host's data
# pipeline (`--host-data`) with the same losses as loading the data itself.
# Usage: guest_offload_policy.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

cat >"$work/malv.toml" <<CONF
[host]
backend = "cpu"
[[vm]]
name = "train-a"
token = "secret-a"
CONF
start_host --config "$work/malv.toml"
guest() {
  "$malv" guest train --socket "$work/malv.sock" --vm train-a --token secret-a \
    --max-steps 30 --log-every 10 "$@"
}

"$malv" policy --admin "$work/admin.sock" allow train-a fair-share >"$work/allow.out" 2>&1 ||
  fail "malv policy allow failed" "$work/allow.out"
if guest --policy gpu_sched=learned-sjf >"$work/refused.out" 2>&1; then
  fail "a policy off the allow-list was accepted" "$work/refused.out"
fi
grep -q "permission_denied" "$work/refused.out" || fail "no permission error" "$work/refused.out"
grep -q "malv_sched_basic/fair-share" "$work/refused.out" ||
  fail "the refusal does not name what is allowed" "$work/refused.out"
guest --policy gpu_sched=fair-share >"$work/allowed.out" 2>&1 ||
  fail "an allowed policy was refused" "$work/allowed.out"
"$malv" policy --admin "$work/admin.sock" list --json | grep -q '"train-a"' ||
  fail "the host does not show train-a using the policy it selected"

guest --host-data fashion-mnist >"$work/offload.out" 2>&1 ||
  fail "training from the host's data pipeline failed" "$work/offload.out" "$work/serve.err"
grep -q "the host's pipeline stages 'fashion-mnist'" "$work/offload.out" ||
  fail "the pipeline was not used" "$work/offload.out"
guest >"$work/local.out" 2>&1 || fail "training with local data failed" "$work/local.out"
grep 'loss' "$work/offload.out" >"$work/offload.loss"
grep 'loss' "$work/local.out" >"$work/local.loss"
sed 's/  [0-9]* examples\/s//' "$work/offload.loss" >"$work/a"
sed 's/  [0-9]* examples\/s//' "$work/local.loss" >"$work/b"
cmp -s "$work/a" "$work/b" || fail "losses differ between host data and local data" "$work/a" "$work/b"
if guest --host-data ../../etc >"$work/escape.out" 2>&1; then
  fail "a dataset path outside the data directories was accepted" "$work/escape.out"
fi
grep -q "permission_denied" "$work/escape.out" || fail "no permission error for ../" "$work/escape.out"
echo ok
