#!/bin/sh
# The guest image boots under QEMU and runs the command it is given: malv runs
# in the guest (its libraries all found there), its output reaches the console
# file, and the command's exit status is vm-boot.sh's.
# Skips (77) without qemu-system-x86_64 or a kernel in /boot.
# Usage: guest_image_boots.sh MALV SCRIPTS_DIR VERSION
set -u
malv=$1
scripts=$2
version=$3

if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "SKIP: qemu-system-x86_64 not installed (Debian package qemu-system-x86)"
  exit 77
fi
if ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
  echo "SKIP: no kernel in /boot (Debian package linux-image-amd64)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/malv-vmtest-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

if ! bash "$scripts/build-guest-image.sh" "$work/guest.cpio.gz" --malv "$malv"; then
  echo "FAIL: build-guest-image.sh failed" >&2
  exit 1
fi

# boot CONSOLE COMMAND...: boots the image running COMMAND; sets $status.
boot() {
  console=$1
  shift
  status=0
  bash "$scripts/vm-boot.sh" --image "$work/guest.cpio.gz" --console "$console" \
    --timeout 120 --pidfile "$work/qemu.pid" -- "$@" || status=$?
}

boot "$work/version.console" malv --version
if [ "$status" -ne 0 ]; then
  fail "malv --version in the guest: status $status, expected 0"
fi
if ! grep -aq "malv $version" "$work/version.console"; then
  fail "the console lacks 'malv $version'"
fi
if ! grep -aq '^malv-guest-exit: 0' "$work/version.console"; then
  fail "the console lacks the guest's exit line"
fi
if [ "$failures" -ne 0 ]; then
  echo "---- console:" >&2
  cat "$work/version.console" >&2
fi
if ! [ -s "$work/qemu.pid" ]; then
  fail "no QEMU pid in the --pidfile"
fi

boot "$work/exit3.console" sh -c 'exit 3'
if [ "$status" -ne 3 ]; then
  fail "sh -c 'exit 3' in the guest: vm-boot.sh exited $status, expected 3"
  cat "$work/exit3.console" >&2
fi

[ "$failures" -eq 0 ] || exit 1
echo "PASS"
