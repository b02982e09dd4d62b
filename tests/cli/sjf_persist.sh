#!/bin/sh
# learned-sjf's model persists per host through `malv serve`'s state
# directory: a VM trains on it, the host stops (the policy saves), the file
# is a model of 19 inputs and 1 output; a restarted host opens that copy for
# the next VM that selects learned-sjf; a truncated copy is skipped for the
# shipped model with the reason in the log.
# Usage: sjf_persist.sh MALV MALV_MLP_TOOL
set -eu
malv=$1
mlp_tool=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

cat >"$work/malv.toml" <<CONF
[host]
backend = "cpu"
[[vm]]
name = "train-a"
token = "secret-a"
CONF
state="$work/state"
saved="$state/models/learned-sjf.safetensors"
start_host --config "$work/malv.toml" --state-dir "$state"
"$malv" guest train --socket "$work/malv.sock" --vm train-a --token secret-a --max-steps 40 \
  --log-every 20 --policy gpu_sched=learned-sjf >"$work/train.out" 2>&1 ||
  fail "training under learned-sjf failed" "$work/train.out" "$work/serve.err"
stop_host
host=""
[ -f "$saved" ] || fail "no $saved after the host stopped" "$work/serve.err"
"$mlp_tool" info "$saved" >"$work/info" 2>&1 || fail "the saved model does not load" "$work/info"
grep -q "19 inputs, 1 outputs" "$work/info" || fail "the saved model's shape" "$work/info"

# A restarted host: the next selection opens the persisted copy.
start_host --config "$work/malv.toml" --state-dir "$state"
"$malv" policy --admin "$work/admin.sock" select train-a learned-sjf --class gpu_sched \
  >"$work/select.out" 2>&1 || fail "selecting learned-sjf failed" "$work/select.out" "$work/serve.err"
tries=0
until grep -q "model learned-sjf: the persisted" "$work/serve.err"; do
  tries=$((tries + 1))
  [ $tries -lt 50 ] || fail "the restarted host did not open the persisted model" "$work/serve.err"
  sleep 0.1
done
stop_host
host=""

# A truncated copy: the shipped model, and the reason logged.
head -c 100 "$saved" >"$work/cut" && mv "$work/cut" "$saved"
start_host --config "$work/malv.toml" --state-dir "$state"
"$malv" policy --admin "$work/admin.sock" select train-a learned-sjf --class gpu_sched \
  >"$work/select2.out" 2>&1 || fail "selecting learned-sjf over a bad copy failed" "$work/select2.out" "$work/serve.err"
tries=0
until grep -q "the persisted file is not used" "$work/serve.err"; do
  tries=$((tries + 1))
  [ $tries -lt 50 ] || fail "the truncated copy was not reported" "$work/serve.err"
  sleep 0.1
done
grep "the persisted file is not used" "$work/serve.err" | grep -q "malv_learned_sjf.safetensors" ||
  fail "the fallback does not name the shipped model" "$work/serve.err"
echo ok
