#!/bin/sh
# `malv serve --host-cpus`: every thread of the host (workers, the session's
# dispatcher, those started later) runs on the cores named and nowhere else;
# the backend starts one worker per core it has, at the dispatchers'
# priority; /health, `malv stats` and
# /metrics say which cores; the guest's own process is left on every core;
# a list naming a core the host may not use, or none, is refused at start.
# Usage: host_cpus.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

all=$(grep Cpus_allowed_list /proc/self/status | cut -f2)
last=$(/usr/bin/python3 -c 'import os; print(max(os.sched_getaffinity(0)))')

# Refused before anything starts, naming the flag.
if "$malv" serve --socket "$work/x.sock" --host-cpus 1000 >"$work/bad.out" 2>&1; then
  fail "a core the host may not use was accepted" "$work/bad.out"
fi
grep -q "host_cpus (--host-cpus): CPUs 1000 are not among" "$work/bad.out" || fail "no reason given" "$work/bad.out"
if "$malv" serve --socket "$work/x.sock" --host-cpus "0-" >"$work/bad2.out" 2>&1; then
  fail "a malformed list was accepted" "$work/bad2.out"
fi
grep -q "host_cpus (--host-cpus)" "$work/bad2.out" || fail "no reason given" "$work/bad2.out"

start_host --backend cpu --open --host-cpus "$last"
"$malv" guest train --socket "$work/malv.sock" --vm pinned --max-steps 100000 --log-every 0 \
  >"$work/guest.out" 2>&1 &
guest=$!
tries=0
until grep -qx malv-dispatch /proc/$host/task/*/comm 2>/dev/null; do
  tries=$((tries + 1))
  [ $tries -lt 300 ] || fail "the guest's session never started" "$work/guest.out" "$work/serve.err"
  sleep 0.1
done
threads=0
for task in /proc/$host/task/*; do
  cpus=$(grep Cpus_allowed_list "$task/status" | cut -f2) || continue  # exited meanwhile
  [ "$cpus" = "$last" ] || fail "host thread $(cat "$task/comm") runs on $cpus, not $last"
  threads=$((threads + 1))
done
[ $threads -ge 4 ] || fail "only $threads host threads"
guest_cpus=$(grep Cpus_allowed_list /proc/$guest/status | cut -f2)
[ "$guest_cpus" = "$all" ] || fail "the guest was confined to $guest_cpus"
workers=$(grep -lx malv-worker /proc/$host/task/*/comm | wc -l)
[ "$workers" = 1 ] || fail "$workers general workers on one core"
# ... at the dispatchers' priority (nice 0, not 10: docs/cpu-control.md).
worker=$(dirname "$(grep -lx malv-worker /proc/$host/task/*/comm)")
nice=$(awk '{print $19}' "$worker/stat")
[ "$nice" = 0 ] || fail "the general worker runs at nice $nice"

"$malv" stats --admin "$work/admin.sock" --json >"$work/stats.json"
grep -q "\"host_cpus\": \"$last\"" "$work/stats.json" || fail "/health does not name the cores" "$work/stats.json"
"$malv" stats --admin "$work/admin.sock" | head -1 | grep -q "the host's threads on cores $last" ||
  fail "malv stats does not say the cores"
"$malv" stats --admin "$work/admin.sock" --metrics | grep -qx "malv_host_cpus 1" ||
  fail "no malv_host_cpus gauge"
kill $guest
wait $guest 2>/dev/null || true
stop_host
echo "host_cpus: the host's $threads threads on core $last, the guest on $all"
