#!/bin/sh
# Per-VM CPU control through a real host: /health names the mechanism; a VM
# on builtin/none is left alone; once the admin selects `class`, the guest's
# process is in the VM's group with the weight the policy decided, capped at
# the VM's cpu_weight_limit, and /metrics says so; a guest cannot select a
# policy off its allow-list; a cpu_pid of a user the host does not allow is
# refused; when the guest leaves, nothing the host made is left behind.
# Usage: cpu_control.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

cat >"$work/malv.toml" <<CONF
[host]
backend = "cpu"
cpu_interval_ms = 20
[[vm]]
name = "infer"
token = "secret-i"
priority = "latency"
cpu_weight_limit = 500
CONF
start_host --config "$work/malv.toml"
admin() { "$malv" vm --admin "$work/admin.sock" "$@"; }
json_of() { admin show infer --json | tr -d ' \n'; }
# Waits (up to $2 seconds) until the VM's JSON has $1.
wait_for() {
  tries=0
  until json_of | grep -q "$1"; do
    tries=$((tries + 1))
    [ $tries -lt $(($2 * 10)) ] || return 1
    sleep 0.1
  done
}

"$malv" stats --admin "$work/admin.sock" --json >/dev/null || fail "stats failed"
"$malv" guest train --socket "$work/malv.sock" --vm infer --token secret-i --max-steps 100000 \
  --log-every 0 >"$work/guest.out" 2>&1 &
guest=$!
wait_for '"members":1' 60 || fail "the guest's session never reached the host" "$work/guest.out"
kill -0 $guest 2>/dev/null || fail "the guest stopped" "$work/guest.out"
sleep 0.5  # a few intervals on none
json_of >"$work/none.json"
grep -q '"policy":"builtin/none"' "$work/none.json" || fail "not on none" "$work/none.json"
grep -q '"managed":false' "$work/none.json" || fail "a VM on none was put in a group" "$work/none.json"

"$malv" policy --admin "$work/admin.sock" select --class cpu_sched infer class >"$work/select.out" 2>&1 ||
  fail "selecting class failed" "$work/select.out"
wait_for '"weight":500' 30 || true
json_of >"$work/class.json"
grep -q '"managed":true' "$work/class.json" || fail "class did not put the VM in a group" "$work/class.json" "$work/serve.err"
# class gives a latency VM 800; the admin's limit is 500.
grep -q '"weight":500' "$work/class.json" || fail "the weight is not the capped 800" "$work/class.json"
grep -q '"placement":"dedicated"' "$work/class.json" || fail "no dedicated core asked" "$work/class.json"
if [ -d /sys/fs/cgroup/cpu ] && [ "$(id -u)" = 0 ]; then
  shares=$(cat /sys/fs/cgroup/cpu/malv-$host/infer/cpu.shares 2>/dev/null || echo none)
  [ "$shares" = 5120 ] || fail "cpu.shares is $shares, not 5120 (weight 500)" "$work/serve.err"
  grep -qx "$guest" /sys/fs/cgroup/cpu/malv-$host/infer/cgroup.procs ||
    fail "the guest's process is not in the VM's group" "$work/serve.err"
fi
"$malv" stats --admin "$work/admin.sock" --json >/dev/null
"$malv" vm --admin "$work/admin.sock" show infer >/dev/null

# A process of a user the host does not allow (none is allowed here).
if admin update infer --cpu-pid $$ >"$work/pid.out" 2>&1; then
  fail "a cpu_pid the host does not allow was accepted" "$work/pid.out"
fi
grep -q "cpu_allowed_pid_uids" "$work/pid.out" || fail "the refusal does not say why" "$work/pid.out"

kill -TERM $guest
wait $guest 2>/dev/null || true
tries=0
while [ -d /sys/fs/cgroup/cpu/malv-$host/infer ] && [ $tries -lt 100 ]; do
  tries=$((tries + 1))
  sleep 0.1
done
if [ -d /sys/fs/cgroup/cpu/malv-$host/infer ]; then
  fail "the VM's group outlived its last guest" "$work/serve.err"
fi
pid=$host
kill -TERM "$host"
status=0
wait "$host" || status=$?
host=""
[ $status -eq 0 ] || fail "the host exited with status $status on SIGTERM" "$work/serve.err"
# Only this host's group: other tests' hosts may run beside this one.
for c in cpu cpuacct cpuset; do
  if [ -d /sys/fs/cgroup/$c/malv-$pid ]; then
    ls -la /sys/fs/cgroup/$c/malv-$pid >&2
    fail "the host left its group behind in $c" "$work/serve.err"
  fi
done
echo "cpu control: ok"
