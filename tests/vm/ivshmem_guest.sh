#!/bin/sh
# A real VM as a guest (issue 19's acceptance): malv serve is the ivshmem
# server of VM vm1; the guest image boots under QEMU (KVM when it boots,
# else TCG) with an ivshmem-doorbell device on vm1's socket and
#  1. trains the Fashion-MNIST MLP for one epoch from the host's data
#     pipeline: its losses equal a process guest's with the same seed, and
#     once the VM powers off every byte vm1 held comes back within 1 s
#     while another VM keeps training (it trains all along);
#  2. serves `malv guest infer` requests and reports latency percentiles
#     (no --ivshmem given: inside a VM with the device it is the default);
#  3. while a VM trains, a second QEMU naming the same socket is refused
#     (it fails to start) and the first goes on;
#  4. QEMU killed with SIGKILL mid-run gives back every byte of vm1's within
#     1 s while another VM keeps training.
# Skips (77) without qemu-system-x86_64, a kernel in /boot or the dataset.
# Usage: ivshmem_guest.sh MALV SCRIPTS_DIR
set -eu
malv=$1
scripts=$2
here=$(cd "$(dirname "$0")" && pwd)
data=/usr/share/datasets/fashion-mnist
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "SKIP: no kernel in /boot"; exit 77; }
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || { echo "SKIP: no Fashion-MNIST in $data"; exit 77; }
. "$here/../cli/host_test_lib.sh"

bash "$scripts/build-guest-image.sh" "$work/guest.cpio.gz" --malv "$malv" >"$work/image.log" 2>&1 ||
  fail "building the guest image failed" "$work/image.log"
cat >"$work/malv.toml" <<CONF
[host]
backend = "cpu"
ivshmem_slots = 4
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
# boot CONSOLE [vm-boot options...] -- COMMAND...: sets $status.
boot() {
  console=$1
  shift
  status=0
  bash "$scripts/vm-boot.sh" --image "$work/guest.cpio.gz" --console "$console" \
    --ivshmem-socket "$sock" --vectors 5 --timeout 300 "$@" >>"$work/boot.log" 2>&1 || status=$?
}
json_of() { "$malv" vm --admin "$work/admin.sock" show "$1" --json | tr -d ' \n'; }
# Polls (every 0.1 s, at most $2 tries) until vm1 holds nothing; sets $waited_ms.
wait_vm1_empty() {
  tries=0
  until json_of vm1 | grep -q '"memory_used":0,[^}]*"sessions":0'; do
    tries=$((tries + 1))
    [ $tries -le "$1" ] || return 1
    sleep 0.1
  done
  waited_ms=$((tries * 100))
}
losses() { sed -n 's/.*\(step [0-9]*\/[0-9]*\)  loss \([0-9.]*\).*/\1 \2/p' "$1"; }

# Another VM trains all along: it must keep going whatever happens to vm1.
"$malv" guest train --socket "$work/malv.sock" --vm other --token secret-2 --epochs 100000 \
  --log-every 20 >"$work/other.out" 2>&1 &
other=$!
# other_progresses: the other VM's guest lives and logged since the last call.
other_lines=0
other_progresses() {
  sleep 1
  kill -0 $other 2>/dev/null || fail "the other VM's guest stopped" "$work/other.out"
  now=$(wc -l <"$work/other.out")
  [ "$now" -gt "$other_lines" ] || fail "the other VM stopped training" "$work/other.out"
  other_lines=$now
}

# 1. One epoch, in a process and in the VM, from the host's data pipeline.
"$malv" guest train --socket "$work/malv.sock" --vm vm1 --token secret-1 --host-data fashion-mnist \
  --epochs 1 --seed 5 --log-every 50 --checkpoint "$work/model.ckpt" >"$work/process.out" 2>&1 ||
  fail "the process guest failed" "$work/process.out"
boot "$work/train.console" -- malv guest train --ivshmem --vm vm1 --host-data fashion-mnist \
  --epochs 1 --seed 5 --log-every 50
[ "$status" -eq 0 ] || fail "the VM's training exited $status" "$work/train.console" "$work/boot.log"
wait_vm1_empty 10 || fail "vm1 still holds memory 1 s after its VM powered off" "$work/serve.err"
echo "VM powered off: vm1 held nothing after ${waited_ms} ms"
other_progresses
losses "$work/process.out" >"$work/process.loss"
losses "$work/train.console" >"$work/vm.loss"
[ "$(wc -l <"$work/process.loss")" -ge 9 ] || fail "the process guest logged too little" "$work/process.out"
cmp -s "$work/process.loss" "$work/vm.loss" ||
  fail "the VM's losses differ from the process guest's" "$work/process.loss" "$work/vm.loss"
echo "one epoch in the VM: $(wc -l <"$work/vm.loss") losses equal to the process guest's"

# 2. Inference from inside the VM (its test set and model put in the image),
#    the device found without --ivshmem.
boot "$work/infer.console" --file "$work/model.ckpt:/data/model.ckpt" \
  --file "$data/t10k-images-idx3-ubyte.gz:/data/fm/t10k-images-idx3-ubyte.gz" \
  --file "$data/t10k-labels-idx1-ubyte.gz:/data/fm/t10k-labels-idx1-ubyte.gz" \
  -- malv guest infer --vm vm1 --checkpoint /data/model.ckpt --data-dir /data/fm \
  --rate 50 --requests 100
[ "$status" -eq 0 ] || fail "the VM's inference exited $status" "$work/infer.console" "$work/boot.log"
grep -aq "p99" "$work/infer.console" || fail "no latency percentiles reported" "$work/infer.console"

# 3. and 4. A long run in the VM.
boot "$work/long.console" --pidfile "$work/qemu.pid" -- malv guest train --ivshmem --vm vm1 \
  --host-data fashion-mnist --epochs 100000 --log-every 100 &
long=$!
tries=0
until json_of vm1 | grep '"sessions":1' | grep -q '"memory_used":[1-9]'; do
  tries=$((tries + 1))
  [ $tries -lt 1200 ] || fail "the long VM run never started" "$work/long.console" "$work/boot.log"
  sleep 0.1
done
boot "$work/second.console" -- malv --version
[ "$status" -ne 0 ] || fail "a second QEMU on vm1's socket started" "$work/second.console"
"$malv" stats --admin "$work/admin.sock" --metrics >"$work/metrics.txt"
grep -q 'malv_vm_ivshmem_refused_total{vm="vm1"} 1' "$work/metrics.txt" ||
  fail "the second QEMU was not refused by the host" "$work/metrics.txt" "$work/serve.err"
json_of vm1 | grep -q '"sessions":1' || fail "the refusal disturbed the running VM"
kill -KILL "$(cat "$work/qemu.pid")"
wait_vm1_empty 10 || fail "vm1 still holds memory 1 s after its QEMU was killed" "$work/serve.err"
echo "QEMU killed mid-run: vm1 held nothing after ${waited_ms} ms"
wait $long 2>/dev/null || true
other_progresses
kill -TERM $other
wait $other 2>/dev/null || true
echo "ivshmem VM guest: ok"
