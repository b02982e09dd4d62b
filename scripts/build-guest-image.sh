#!/usr/bin/env bash
# Builds the MaLV-OS guest image: a gzip'd newc initramfs that a stock Debian
# kernel boots straight into, made from Debian packages only.
#
#   scripts/build-guest-image.sh OUT.cpio.gz [--malv PATH_TO_MALV_BINARY]
#
# What goes in: busybox (from busybox-static) with its applet links, the malv
# binary (default build/release/src/cli/malv) at /usr/bin/malv, every shared
# library `ldd` says it needs (at the path the host's loader found it, plus a
# link in the multiarch directory when that path is only reachable through
# ld.so.cache, as OpenBLAS's /etc/alternatives choice is), empty /proc /sys /dev
# /tmp /run, and /init.
#
# /init mounts the pseudo filesystems, runs the shell script /malv-run with its
# output on the console, prints `malv-guest-exit: <status>` and powers off.
# The image holds no /malv-run: scripts/vm-boot.sh appends one per boot as a
# second cpio archive (the kernel unpacks concatenated archives in order).
# Without /malv-run, the guest says so and powers off, or with `malv.shell` on
# the kernel command line gives a shell on the console.
#
# Deterministic: files are sorted, owned by root and dated SOURCE_DATE_EPOCH
# (default 0), and gzip stores no name or time, so the same inputs give the
# same bytes.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

usage() {
  echo "usage: $0 OUT.cpio.gz [--malv PATH_TO_MALV_BINARY]" >&2
  exit "${1:-2}"
}
die() {
  echo "build-guest-image: $*" >&2
  exit 1
}

out=""
malv="$repo_root/build/release/src/cli/malv"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --malv) [[ $# -ge 2 ]] || usage; malv=$2; shift 2 ;;
    --malv=*) malv=${1#--malv=}; shift ;;
    -h | --help) usage 0 ;;
    -*) echo "build-guest-image: unknown option $1" >&2; usage ;;
    *) [[ -z "$out" ]] || usage; out=$1; shift ;;
  esac
done
[[ -n "$out" ]] || usage

# Each tool, and the Debian package that provides it.
need_tool() {
  command -v "$1" >/dev/null || die "'$1' not found: install the Debian package $2 (scripts/install-deps.sh)"
}
need_tool cpio cpio
need_tool gzip gzip
need_tool ldd libc-bin

busybox=/usr/bin/busybox
[[ -x "$busybox" ]] || busybox=/bin/busybox
[[ -x "$busybox" ]] || die "$busybox not found: install the Debian package busybox-static (scripts/install-deps.sh)"
# The dynamically linked `busybox` package installs the same path; the guest
# needs the static one (no libraries of its own to find).
if ldd "$busybox" >/dev/null 2>&1; then
  die "$busybox is dynamically linked (package busybox?): install the Debian package busybox-static"
fi
[[ -f "$malv" && -x "$malv" ]] || die "malv binary '$malv' not found: build it (make, or ninja -C build/release malv) or pass --malv PATH"

root=$(mktemp -d "${TMPDIR:-/tmp}/malv-guest-root.XXXXXX")
trap 'rm -rf "$root"' EXIT

# A merged-/usr tree, as Debian 12 has: /bin, /sbin, /lib and /lib64 are links
# into /usr, so a library found at /lib/... or /usr/lib/... lands in one place.
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,tmp,run,etc,root}
chmod 1777 "$root/tmp"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

# busybox and its applets.
cp "$busybox" "$root/usr/bin/busybox"
applets=0
while read -r applet; do
  # (linuxrc: the kernel runs /init; a second entry point would only confuse.)
  [[ -n "$applet" && "$applet" != */busybox && "$applet" != linuxrc ]] || continue
  target="$root/$applet"
  [[ -e "$target" || -L "$target" ]] && continue
  mkdir -p "$(dirname "$target")"
  ln -s /usr/bin/busybox "$target"
  applets=$((applets + 1))
done < <("$busybox" --list-full)

# malv and its libraries.
cp "$malv" "$root/usr/bin/malv"
chmod 0755 "$root/usr/bin/malv"

ldd_out=$(ldd "$malv") || die "ldd $malv failed"
if grep -q "not found" <<<"$ldd_out"; then
  die "$malv needs libraries this machine lacks (run scripts/install-deps.sh):
$(grep "not found" <<<"$ldd_out")"
fi

# Lines look like `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)`,
# `/lib64/ld-linux-x86-64.so.2 (0x...)` or `linux-vdso.so.1 (0x...)` (no file).
lib_paths=()
while read -r line; do
  if [[ "$line" =~ ^[^[:space:]]+\ =\>\ (/[^[:space:]]+)\ \( ]]; then
    lib_paths+=("${BASH_REMATCH[1]}")
  elif [[ "$line" =~ ^(/[^[:space:]]+)\ \( ]]; then
    lib_paths+=("${BASH_REMATCH[1]}")
  fi
done <<<"$ldd_out"
[[ ${#lib_paths[@]} -gt 0 ]] || die "ldd listed no libraries for $malv (a static binary needs none, but malv is not one)"

# The directory the guest's loader searches without an ld.so.cache: the one
# libc lives in (Debian's multiarch directory, built into its ld.so).
multiarch_dir=""
for path in "${lib_paths[@]}"; do
  if [[ "$(basename "$path")" == libc.so.* ]]; then
    multiarch_dir=$(dirname "$path")
    multiarch_dir=/usr${multiarch_dir#/usr} # /lib/x86_64-linux-gnu and /usr/lib/... are one directory
  fi
done
[[ -n "$multiarch_dir" ]] || die "could not find libc among the libraries of $malv"

declare -A copied=()
for path in "${lib_paths[@]}"; do
  real=$(readlink -f "$path") || die "cannot resolve $path"
  [[ -f "$real" ]] || die "library $path (-> $real) is missing: reinstall the package that owns it (dpkg -S $path)"
  # The file itself, at the path the host's loader resolved (through any
  # /etc/alternatives links): in the guest it is a plain file there.
  guest_path=$path
  if [[ -z "${copied[$guest_path]:-}" ]]; then
    mkdir -p "$root$(dirname "$guest_path")"
    cp "$real" "$root$guest_path"
    copied[$guest_path]=1
  fi
  # Found through ld.so.cache from a directory the loader does not search by
  # default (OpenBLAS: /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ->
  # /etc/alternatives/... -> openblas-pthread/libopenblas.so.0): link the name
  # into the multiarch directory so the guest's cache-less loader finds it.
  dir=$(dirname "$path")
  dir=/usr${dir#/usr}
  case "$dir" in
    "$multiarch_dir" | /usr/lib64 | /usr/lib) ;;
    *)
      link="$root$multiarch_dir/$(basename "$path")"
      if [[ ! -e "$link" ]]; then
        mkdir -p "$(dirname "$link")"
        ln -s "$path" "$link"
      fi
      ;;
  esac
done

# Name lookups of localhost (a TCP channel to a guest-local peer) need these;
# there is deliberately no /etc/passwd.
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"

cat >"$root/init" <<'EOF'
#!/bin/sh
# MaLV-OS guest init (written by scripts/build-guest-image.sh): runs /malv-run,
# reports its status as `malv-guest-exit: <status>` and powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
# Quiet console: only emergencies from the kernel from here on, so the
# command's output is not interleaved with kernel messages.
echo 1 >/proc/sys/kernel/printk
console=/dev/console
[ -c /dev/ttyS0 ] && grep -q 'console=ttyS0' /proc/cmdline && console=/dev/ttyS0
exec <"$console" >"$console" 2>&1
hostname malv-guest
ip link set lo up 2>/dev/null

# Written output sits in the serial driver's buffer until the UART takes it;
# changing a tty setting waits for that (tcsetattr TCSADRAIN), so nothing is
# lost when the guest powers off right after.
drain() { stty -F "$console" -echo 2>/dev/null; stty -F "$console" echo 2>/dev/null; }

if [ -f /malv-run ]; then
  cd /
  # (The firmware's last line has no newline; the command's output starts on its own.)
  printf '\nmalv-guest: running /malv-run\n'
  # (stdin: nothing. QEMU's file console has no input, and a read would wait forever.)
  sh /malv-run </dev/null
  status=$?
  drain
  echo "malv-guest-exit: $status"
  drain
  poweroff -f
fi

echo "malv-guest: no /malv-run in this image (scripts/vm-boot.sh adds one); nothing to run"
if grep -qw 'malv.shell' /proc/cmdline; then
  echo "malv-guest: malv.shell given: starting a shell; exit it to power off"
  setsid cttyhack sh
fi
drain
poweroff -f
EOF
chmod 0755 "$root/init"

# The archive: sorted names, root-owned, one fixed date.
epoch=${SOURCE_DATE_EPOCH:-0}
find "$root" -mindepth 1 -exec touch -h -d "@$epoch" {} +
mkdir -p "$(dirname "$out")"
tmp_out="$out.tmp.$$"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio -o -H newc --owner=0:0 --reproducible --quiet) | gzip -n -1 >"$tmp_out"
mv "$tmp_out" "$out"

echo "build-guest-image: wrote $out ($(du -h "$out" | cut -f1))"
echo "  /usr/bin/busybox  $busybox ($applets applet links)"
echo "  /usr/bin/malv     $malv"
(cd "$root" && find . -path ./usr/bin -prune -o -type f -name '*.so*' -print |
  LC_ALL=C sort | sed 's|^\.|  |')
(cd "$root" && find . -path ./usr/bin -prune -o -path ./usr/sbin -prune -o -type l -name '*.so*' -printf '  %p -> %l\n' |
  LC_ALL=C sort | sed 's|^  \./|  /|')
echo "  /init, /etc/hosts, /etc/nsswitch.conf, /proc /sys /dev /tmp /run"
