#!/bin/sh
# The vGPU scheduler's host level from the command line: `malv serve
# --gpu-host-policy`, `malv policy host [LEVEL]` (GET/PUT /scheduler), its
# metric, a refused name, a VM asking for `priority` told where it went, and
# the admin's choice kept across a restart of the host.
# Usage: policy_host_level.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

cat >"$work/malv.toml" <<CONF
[host]
backend = "cpu"
state_dir = "$work/state"
[[vm]]
name = "train-a"
token = "secret-a"
CONF
start_host --config "$work/malv.toml" --gpu-host-policy fifo
admin() { "$malv" policy --admin "$work/admin.sock" "$@"; }

admin host >"$work/show.out" 2>&1 || fail "malv policy host failed" "$work/show.out"
grep -q '"host_policy": "fifo"' "$work/show.out" || fail "--gpu-host-policy fifo not in effect" "$work/show.out"
admin host fair-share >"$work/set.out" 2>&1 || fail "setting the host level failed" "$work/set.out"
grep -q '"host_policy": "fair-share"' "$work/set.out" || fail "the reply does not show the new level" "$work/set.out"
"$malv" stats --admin "$work/admin.sock" --metrics >"$work/metrics.out" 2>&1 ||
  fail "malv stats --metrics failed" "$work/metrics.out"
grep -q '^malv_scheduler_host_policy{policy="fair-share"} 1$' "$work/metrics.out" ||
  fail "the metric does not show the level" "$work/metrics.out"
if admin host lottery >"$work/bad.out" 2>&1; then fail "an unknown level was accepted" "$work/bad.out"; fi
grep -q "lottery" "$work/bad.out" || fail "the refusal does not name the value" "$work/bad.out"
if admin select train-a priority >"$work/vm.out" 2>&1; then
  fail "a VM was given priority as its own policy" "$work/vm.out"
fi
grep -q "host level" "$work/vm.out" || fail "the refusal does not say where priority went" "$work/vm.out"
admin select train-a fair-share >"$work/own.out" 2>&1 || fail "a VM's own fair-share was refused" "$work/own.out"

stop_host
host=""
start_host --config "$work/malv.toml"
admin host >"$work/again.out" 2>&1 || fail "malv policy host failed after the restart" "$work/again.out"
grep -q '"host_policy": "fair-share"' "$work/again.out" ||
  fail "the admin's host level was not kept across the restart" "$work/again.out" "$work/serve.err"
