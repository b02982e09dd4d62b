#!/bin/sh
# The examples, built against the installed prefix alone (CMAKE_PREFIX_PATH
# is the only way in; nothing points at the source or build tree besides
# the examples' own sources), run against the installed host:
#   1. examples/guest-program runs a kernel on a stream, with an event, and
#      checks the values it reads back;
#   2. examples/mlaas-module is loaded into the running host with
#      `malv policy load`, allowed for a VM, and selected by the guest
#      program for itself; the host then lists the VM as using it.
# Usage: guest_program_and_module.sh <cmake> <state file> <examples dir> <generator>
#        <c compiler> <c++ compiler> <sanitizer flags, may be empty>
set -eu
cmake=$1 state=$2 examples=$3 generator=$4 cc=$5 cxx=$6 sanitize=$7

[ -f "$state" ] || { echo "no installed prefix (the install.prefix test failed?)" >&2; exit 1; }
prefix=$(cat "$state")/prefix
malv=$prefix/bin/malv
# $work, cleanup of it and of the host, fail and start_host.
. "$(dirname "$0")/../cli/host_test_lib.sh"
trap 'exit 1' HUP INT TERM

# Configure and build an example against the prefix only.
unset CMAKE_PREFIX_PATH PKG_CONFIG_PATH Malv_DIR 2>/dev/null || true
build_example() { # name, extra cmake arguments...
  name=$1
  shift
  "$cmake" -S "$examples/$name" -B "$work/$name" -G "$generator" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" "$@" >"$work/$name.log" 2>&1 ||
    fail "configuring examples/$name against $prefix failed" "$work/$name.log"
  grep -q "^Malv_DIR:PATH=$prefix/lib/cmake/Malv\$" "$work/$name/CMakeCache.txt" ||
    fail "examples/$name did not find Malv in $prefix" "$work/$name/CMakeCache.txt"
  "$cmake" --build "$work/$name" >>"$work/$name.log" 2>&1 ||
    fail "building examples/$name against $prefix failed" "$work/$name.log"
}
build_example guest-program -DCMAKE_CXX_FLAGS="$sanitize"
build_example mlaas-module
program=$work/guest-program/malv-guest-example
module=$work/mlaas-module/libmalv_round_robin.so
[ -f "$module" ] || fail "no $module"
readelf -d "$program" | grep -q 'NEEDED.*\[libmalv\.so\.0\]' || fail "the program does not link libmalv.so.0"

# The installed host finds the installed policy modules by itself (relative
# to its binary), with MALV_POLICY_DIR unset.
unset MALV_POLICY_DIR
start_host --open --backend cpu

grep -q "loaded module malv_sched_basic .* from $prefix/lib/malv/policies/" "$work/serve.err" ||
  fail "the installed host did not load the installed policy modules" "$work/serve.err"

"$program" "$work/malv.sock" >"$work/program.out" 2>&1 ||
  fail "the guest program failed" "$work/program.out" "$work/serve.err"
grep -q '^malv-guest-example: ok: relu(2x) of 65536 floats' "$work/program.out" ||
  fail "the guest program did not report its check" "$work/program.out"

# The module: loaded into the running host, allowed for VM `example`, selected by it.
"$malv" policy --admin "$work/admin.sock" load "$module" >"$work/load.out" 2>&1 ||
  fail "malv policy load of the example module failed" "$work/load.out" "$work/serve.err"
"$malv" policy --admin "$work/admin.sock" allow example round-robin >"$work/allow.out" 2>&1 ||
  fail "malv policy allow failed" "$work/allow.out" "$work/serve.err"
"$program" "$work/malv.sock" --vm example --policy gpu_sched=round-robin >"$work/selected.out" 2>&1 ||
  fail "the guest program could not select the example module's policy" "$work/selected.out" \
    "$work/serve.err"
grep -q '^malv-guest-example: ok:' "$work/selected.out" ||
  fail "the guest program did not report its check under round-robin" "$work/selected.out"
"$malv" policy --admin "$work/admin.sock" list >"$work/list.out" 2>&1 ||
  fail "malv policy list failed" "$work/list.out"
grep -q 'malv_round_robin .*round-robin .*gpu_sched .*example' "$work/list.out" ||
  fail "the host does not list VM example using malv_round_robin/round-robin" "$work/list.out"
cat "$work/program.out"
echo ok
