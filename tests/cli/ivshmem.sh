#!/bin/sh
# A VM served over ivshmem, reached by a process standing in for its QEMU
# (the same socket messages, region and doorbells; tests/vm boots a real
# QEMU): its training run equals a process guest's with the same seed, loss
# by loss, and so does one saved half way and resumed through the host's
# checkpoint service; the admin API and /metrics show the attachment; a second QEMU on
# the VM's socket while one is attached is refused; killing the attached
# one mid-run gives back every byte the VM held while another VM goes on.
# Usage: ivshmem.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

cat >"$work/malv.toml" <<CONF
[host]
backend = "cpu"
ivshmem_slots = 2
[[vm]]
name = "vm1"
token = "secret-1"
ivshmem = true
[[vm]]
name = "other"
token = "secret-2"
CONF
start_host --config "$work/malv.toml"
sock="$work/vm1.ivshmem"
[ -S "$sock" ] || fail "no ivshmem socket at $sock" "$work/serve.err"
admin() { "$malv" vm --admin "$work/admin.sock" "$@"; }
json_of() { admin show "$1" --json | tr -d ' \n'; }
json_of vm1 >"$work/vm1.json"
grep -q "\"ivshmem\":{[^}]*\"attached\":false" "$work/vm1.json" || fail "ivshmem not shown" "$work/vm1.json"
grep -q "\"socket\":\"$sock\"" "$work/vm1.json" || fail "the socket is not named" "$work/vm1.json"
grep -q '"ivshmem":null' "$(json_of other >"$work/other.json"; echo "$work/other.json")" ||
  fail "a VM without ivshmem shows one" "$work/other.json"

# The same seeded run as a process guest and through the VM's region.
train() {
  "$malv" guest train "$@" --vm vm1 --max-steps 60 --seed 11 --log-every 10 2>&1 |
    sed -n 's/.*\(step [0-9]*\/[0-9]*\)  loss \([0-9.]*\).*/\1 \2/p'
}
train --socket "$work/malv.sock" --token secret-1 >"$work/process.loss"
train --ivshmem "$sock" >"$work/ivshmem.loss"
[ "$(wc -l <"$work/process.loss")" -eq 6 ] || fail "the process guest did not train" "$work/process.loss"
cmp -s "$work/process.loss" "$work/ivshmem.loss" ||
  fail "the ivshmem guest's losses differ from the process guest's" "$work/process.loss" "$work/ivshmem.loss"

# The host's checkpoint service over the region: save half way, resume.
"$malv" guest train --ivshmem "$sock" --vm vm1 --max-steps 30 --seed 11 --log-every 10 \
  --checkpoint host:half >"$work/half.out" 2>&1 || fail "saving a checkpoint failed" "$work/half.out"
train --ivshmem "$sock" --resume host:half >"$work/resumed.loss"
tail -n 3 "$work/process.loss" >"$work/second-half.loss"
cmp -s "$work/second-half.loss" "$work/resumed.loss" ||
  fail "the resumed run differs from the whole one" "$work/second-half.loss" "$work/resumed.loss"

# A long run through the region, another VM beside it.
"$malv" guest train --ivshmem "$sock" --vm vm1 --epochs 100000 --log-every 50 \
  >"$work/long.out" 2>&1 &
long=$!
"$malv" guest train --socket "$work/malv.sock" --vm other --token secret-2 --epochs 100000 \
  --log-every 20 >"$work/other.out" 2>&1 &
other=$!
tries=0
until json_of vm1 | grep '"attached":true,[^}]*"sessions":1' | grep -q '"memory_used":[1-9]'; do
  tries=$((tries + 1))
  [ $tries -lt 300 ] || fail "the ivshmem guest never trained" "$work/long.out" "$work/serve.err"
  sleep 0.1
done

# A second QEMU for the same VM while one is attached.
if "$malv" guest train --ivshmem "$sock" --vm vm1 --max-steps 5 >"$work/second.out" 2>&1; then
  fail "a second QEMU on the VM's socket was served" "$work/second.out"
fi
"$malv" stats --admin "$work/admin.sock" --metrics >"$work/metrics.txt" ||
  fail "malv stats --metrics failed"
grep -q 'malv_vm_ivshmem_refused_total{vm="vm1"} 1' "$work/metrics.txt" ||
  fail "the refusal is not counted" "$work/metrics.txt"
grep -q 'malv_vm_ivshmem_attached{vm="vm1"} 1' "$work/metrics.txt" || fail "not attached" "$work/metrics.txt"
grep -q 'malv_vm_ivshmem_sessions{vm="vm1"} 1' "$work/metrics.txt" || fail "no session" "$work/metrics.txt"
grep -q 'malv_vm_ivshmem_attaches_total{vm="vm1"} 4' "$work/metrics.txt" ||
  fail "attachments miscounted" "$work/metrics.txt"
kill -0 $long 2>/dev/null || fail "the refusal disturbed the attached guest" "$work/long.out"

# Its QEMU dies mid-run: everything the VM held comes back.
kill -KILL $long
wait $long 2>/dev/null || true
tries=0
until json_of vm1 | grep -q '"memory_used":0,[^}]*"sessions":0'; do
  tries=$((tries + 1))
  [ $tries -lt 50 ] || fail "VM vm1 still holds memory 5 s after its QEMU died" "$work/serve.err"
  sleep 0.1
done
echo "vm1 back to zero within $((tries * 100)) ms"
json_of vm1 | grep -q '"attached":false' || fail "still shown attached"
lines=$(wc -l <"$work/other.out")
sleep 1
kill -0 $other 2>/dev/null || fail "the other VM's guest stopped" "$work/other.out"
[ "$(wc -l <"$work/other.out")" -gt "$lines" ] || fail "the other VM stopped making progress" "$work/other.out"
kill -TERM $other
wait $other 2>/dev/null || true

# A new QEMU attaches to the same socket and is served.
train --ivshmem "$sock" >"$work/again.loss"
cmp -s "$work/process.loss" "$work/again.loss" || fail "a later QEMU is not served alike" "$work/again.loss"
echo "ivshmem: ok"
