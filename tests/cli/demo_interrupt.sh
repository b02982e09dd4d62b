#!/bin/sh
# `malv demo` stopped by a signal, once during start-up (SIGTERM) and once
# with every guest running (SIGINT, as Ctrl-C sends): it exits with 128 +
# the signal, writes no report, and leaves no process, socket or file.
# Usage: demo_interrupt.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/leftovers.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-demo-test-XXXXXX")
trap 'rm -rf "$work"' EXIT

# stop_demo SIGNAL EXPECTED_STATUS WAIT_FOR: starts the demo, waits until its
# output shows WAIT_FOR, sends SIGNAL, and checks what it left.
stop_demo() {
  rm -rf "$work/tmp" "$work/out"
  mkdir "$work/tmp" "$work/out"
  TMPDIR="$work/tmp" "$malv" demo --duration 120 --out "$work/out" >"$work/stdout" 2>&1 &
  pid=$!
  tries=0
  until grep -q "$3" "$work/stdout"; do
    tries=$((tries + 1))
    if [ $tries -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
      echo "the demo never printed '$3':" >&2
      cat "$work/stdout" >&2
      kill -TERM $pid 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
  kill -"$1" $pid
  status=0
  wait $pid || status=$?
  if [ $status -ne "$2" ]; then
    echo "after SIG$1 the demo exited with $status, expected $2:" >&2
    cat "$work/stdout" >&2
    return 1
  fi
  if [ -n "$(ls -A "$work/out")" ]; then
    echo "an interrupted demo wrote reports" >&2
    return 1
  fi
  no_leftovers "$work/tmp"
}

stop_demo TERM 143 "starting the host"
stop_demo INT 130 "every guest is running"
