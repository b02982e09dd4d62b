#!/bin/sh
# Spilling keeps training exact, also across a checkpoint and a resume: 20
# steps on a VM where everything fits, and 10 + 10 steps (checkpoint, then
# resume) on an oversubscribed VM that spills all along (resident 4 MiB of a
# footprint of about 6 MiB), end in the same checkpoint, byte for byte.
# Usage: memory_checkpoint_resume.sh MALV
set -u
malv=$1
. "$(dirname "$0")/host_test_lib.sh"

cat >"$work/host.toml" <<'TOML'
[[vm]]
name = "fits"
token = "t"
memory_mib = 256

[[vm]]
name = "spills"
token = "t"
memory_mib = 4
virtual_memory_mib = 64
TOML
# No lending: the spilling VM must stay within its 4 MiB.
start_host --config "$work/host.toml" --backend cpu --state-dir "$work/state" --no-memory-lending

train() {
  vm=$1
  shift
  "$malv" guest train --socket "$work/malv.sock" --vm "$vm" --token t \
    --model mlp:784-256-128-10 --epochs 1 --log-every 0 "$@" >>"$work/train.out" 2>&1 ||
    fail "guest train on $vm $* failed" "$work/train.out"
}
train fits --max-steps 20 --checkpoint "$work/fits.ckpt"
train spills --max-steps 10 --checkpoint "$work/spills.ckpt"
train spills --max-steps 20 --resume "$work/spills.ckpt" --checkpoint "$work/spills.ckpt"

cmp -s "$work/fits.ckpt" "$work/spills.ckpt" ||
  fail "the spilling run, resumed, does not end where the run that fits does"

"$malv" stats --admin "$work/admin.sock" --json >"$work/stats.json" 2>&1 ||
  fail "malv stats failed" "$work/stats.json"
/usr/bin/python3 - "$work/stats.json" <<'PY' || fail "the VM did not spill" "$work/stats.json"
import json, sys
stats = json.load(open(sys.argv[1]))
vms = {vm["name"]: vm for vm in (stats["vms"] if isinstance(stats, dict) else stats)}
m = vms["spills"]["stats"]["memory_manager"]
assert m["bytes_out"] > 0 and m["bytes_in"] > 0, m
assert vms["fits"]["stats"]["memory_manager"]["bytes_in"] == 0, vms["fits"]
PY
