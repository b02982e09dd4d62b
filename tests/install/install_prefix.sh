#!/bin/sh
# Fixture setup: installs this build tree into a fresh temporary prefix,
# records the directory in STATE, and checks what an out-of-tree user
# relies on: the layout, libmalv's soname and links, public headers that
# compile alone, only the API exported, and no path into this tree in any
# installed package file.
# Usage: install_prefix.sh <cmake> <build dir> <source dir> <state file> <c++> <version>
set -eu
cmake=$1 build=$2 source=$3 state=$4 cxx=$5 version=$6

# A prefix left behind by an interrupted run goes first.
if [ -f "$state" ]; then
  rm -rf "$(cat "$state")"
  rm -f "$state"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-install-XXXXXX")
ok=""
cleanup() { [ -n "$ok" ] || { rm -rf "$work"; rm -f "$state"; }; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
fail() {
  echo "$1" >&2
  shift
  for f in "$@"; do cat "$f" >&2; done
  exit 1
}

prefix=$work/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  fail "cmake --install failed" "$work/install.log"

lib=$prefix/lib
[ -f "$lib/libmalv.so.$version" ] || fail "no $lib/libmalv.so.$version"
[ "$(readlink "$lib/libmalv.so.0")" = "libmalv.so.$version" ] || fail "libmalv.so.0 is not a link to libmalv.so.$version"
[ "$(readlink "$lib/libmalv.so")" = "libmalv.so.0" ] || fail "libmalv.so is not a link to libmalv.so.0"
readelf -d "$lib/libmalv.so.$version" | grep -q 'SONAME.*\[libmalv\.so\.0\]' || fail "libmalv's soname is not libmalv.so.0"
[ -x "$prefix/bin/malv" ] || fail "no $prefix/bin/malv"
"$prefix/bin/malv" --version | grep -q "$version" || fail "bin/malv --version does not say $version"
ls "$lib"/malv/policies/lib*.so >/dev/null 2>&1 || fail "no policy modules in $lib/malv/policies"
for f in MalvConfig.cmake MalvConfigVersion.cmake MalvTargets.cmake; do
  [ -f "$lib/cmake/Malv/$f" ] || fail "no $lib/cmake/Malv/$f"
done
for f in malv.pc malv-policy-module.pc; do
  [ -f "$lib/pkgconfig/$f" ] || fail "no $lib/pkgconfig/$f"
done
PKG_CONFIG_PATH=$lib/pkgconfig pkg-config --libs malv | grep -q -- '-lmalv' ||
  fail "pkg-config --libs malv does not name -lmalv"

# Every public header compiles alone against the prefix: nothing outside
# include/malv/ is needed.
for h in connection stream objects dataset checkpoint policy_selection result error mlaas \
  protocol; do
  [ -f "$prefix/include/malv/$h.h" ] || fail "no $prefix/include/malv/$h.h"
done
for h in "$prefix"/include/malv/*.h; do
  if grep -n '^#include "' "$h" | grep -v '"malv/' >"$work/includes"; then
    fail "$h includes a header outside include/malv/:" "$work/includes"
  fi
  echo "#include <malv/$(basename "$h")>" |
    "$cxx" -std=c++20 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$prefix/include" -x c++ - \
      >"$work/header.log" 2>&1 || fail "$h does not compile alone against the prefix" "$work/header.log"
done

# Only the API is exported: no internals of the channel, ipc, proto or logging.
nm -DC --defined-only "$lib/libmalv.so.$version" >"$work/exports"
grep -q 'malv::guest::Connection::connect_unix' "$work/exports" || fail "libmalv does not export the API" "$work/exports"
if grep -E 'ConnectionCore|ClientChannel|ArenaAllocator|malv::ipc|malv::proto|malv::log|fmt::|spdlog' \
  "$work/exports" >"$work/leaked"; then
  fail "libmalv exports internals:" "$work/leaked"
fi

# The package files find everything relative to themselves.
if grep -rlF -e "$source" -e "$build" "$lib/cmake" "$lib/pkgconfig" "$prefix/include" >"$work/leaks"; then
  fail "installed files name the source or build tree:" "$work/leaks"
fi

echo "$work" >"$state"
ok=1
echo "installed into $prefix"
