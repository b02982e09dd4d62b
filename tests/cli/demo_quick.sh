#!/bin/sh
# `malv demo --duration 8` end to end: it writes both reports, the JSON has
# the three VMs, a policy switch time and progress for every VM, the HTML
# has its charts, and no process, socket or file of the run is left behind.
# Usage: demo_quick.sh <path to malv> <path to cmake>
set -eu
malv=$1
cmake=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/leftovers.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-demo-test-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp" "$work/out"

if ! TMPDIR="$work/tmp" "$malv" demo --duration 8 --out "$work/out" >"$work/stdout" 2>"$work/stderr"; then
  echo "malv demo failed:" >&2
  cat "$work/stdout" "$work/stderr" >&2
  exit 1
fi
for f in malv-demo-report.json malv-demo-report.html; do
  test -s "$work/out/$f" || { echo "no $f" >&2; cat "$work/stdout" >&2; exit 1; }
done
test "$(grep -c '<svg' "$work/out/malv-demo-report.html")" -eq 3 || {
  echo "the HTML report should hold 3 charts" >&2
  exit 1
}
grep -q "switches the scheduler's host level to priority" "$work/stdout" ||
  { echo "no switch of the host level announced" >&2; exit 1; }
grep -q 'Summary' "$work/stdout" || { echo "no summary printed" >&2; exit 1; }
"$cmake" -DREPORT="$work/out/malv-demo-report.json" -P "$here/check_demo_report.cmake"
no_leftovers "$work/tmp"
