#!/usr/bin/env bash
# Boots one MaLV-OS guest VM that runs one command, waits for it, and exits
# with the command's status.
#
#   scripts/vm-boot.sh --image IMG.cpio.gz --console FILE [options] -- COMMAND [ARGS...]
#
# The image comes from scripts/build-guest-image.sh. The command goes into the
# guest as /malv-run, a shell script in a second small cpio archive appended to
# a copy of the image (the kernel unpacks concatenated archives in order), so
# the image is never rebuilt per run. The guest's /init runs it with its output
# on the serial console, which QEMU writes to FILE, then prints
# `malv-guest-exit: <status>` and powers off; that status is this script's.
#
# Options:
#   --ivshmem-socket PATH  an ivshmem-doorbell device whose server listens on PATH
#   --vectors N            interrupt vectors of that device (default 8)
#   --accel auto|kvm|tcg   (default auto; MALV_VM_ACCEL=kvm|tcg overrides it)
#   --memory MiB           (default 512)
#   --cpus N               (default 1)
#   --timeout SECONDS      kill QEMU after this long (default 600)
#   --kernel PATH          (default the newest /boot/vmlinuz-*)
#   --append ARGS          more kernel command line (e.g. malv.shell)
#   --qemu-arg ARG         one more QEMU argument, passed as is (repeatable)
#   --pidfile FILE         write QEMU's pid there (the pid is also printed)
#   --file SRC:DEST        put the host's file SRC at DEST in the guest (repeatable;
#                          e.g. a test set for `malv guest infer`)
#
# Exit status: the guest command's; 124 when the VM timed out (QEMU killed);
# 125 when the VM did not report a status (QEMU failed, the kernel panicked,
# QEMU was killed); 2 for bad usage. Messages go to stderr, prefixed vm-boot:.
#
# Accelerator: KVM is only used when it boots. On machines that are themselves
# VMs, /dev/kvm can exist and create VMs while a guest under it hangs at boot.
# So `auto` boots the image once under KVM with a short timeout
# (MALV_VM_KVM_PROBE_TIMEOUT, default 15 s) and falls back to TCG if no status
# comes back. The answer is cached in ${XDG_RUNTIME_DIR:-/tmp}, keyed by
# kernel, QEMU version and /dev/kvm, so only the first boot pays for the probe.
#
# Kernel: QEMU boots the uncompressed kernel inside the bzImage through its PVH
# entry point when it has one (Debian's has): extracted once (xz, readelf) into
# ${XDG_CACHE_HOME:-~/.cache}/malv-vm; under TCG that saves about 4 s a boot.
# MALV_VM_PVH=0 boots the bzImage as it is.
set -euo pipefail

usage() {
  # The header comment above, up to the accelerator notes.
  sed -n '2,/^# Accelerator:/{/^# Accelerator:/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit "${1:-2}"
}
say() { echo "vm-boot: $*" >&2; }
die() {
  say "$*"
  exit 125
}

image=""
console=""
ivshmem_socket=""
vectors=8
accel=auto
memory=512
cpus=1
timeout=600
kernel=""
append_extra=""
pidfile=""
qemu_extra=()
files=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --image | --console | --ivshmem-socket | --vectors | --accel | --memory | --cpus | --timeout | --kernel | --append | --qemu-arg | --pidfile | --file)
      [[ $# -ge 2 ]] || { say "$1 needs a value"; usage; }
      case "$1" in
        --image) image=$2 ;;
        --console) console=$2 ;;
        --ivshmem-socket) ivshmem_socket=$2 ;;
        --vectors) vectors=$2 ;;
        --accel) accel=$2 ;;
        --memory) memory=$2 ;;
        --cpus) cpus=$2 ;;
        --timeout) timeout=$2 ;;
        --kernel) kernel=$2 ;;
        --append) append_extra="$append_extra $2" ;;
        --qemu-arg) qemu_extra+=("$2") ;;
        --pidfile) pidfile=$2 ;;
        --file)
          [[ "$2" == *:/* && -f "${2%%:*}" ]] || { say "--file needs SRC:DEST, SRC a file here and DEST an absolute path, not '$2'"; exit 2; }
          files+=("$2")
          ;;
      esac
      shift 2
      ;;
    --) shift; break ;;
    -h | --help) usage 0 ;;
    *) say "unknown argument $1 (the command goes after --)"; usage ;;
  esac
done
[[ $# -gt 0 ]] || { say "no command given (after --)"; usage; }
[[ -n "$image" && -n "$console" ]] || { say "--image and --console are required"; usage; }
for n in vectors memory cpus timeout; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || { say "--$n must be a positive integer, not '${!n}'"; exit 2; }
done
[[ -n "${MALV_VM_ACCEL:-}" ]] && accel=$MALV_VM_ACCEL
case "$accel" in auto | kvm | tcg) ;; *) say "accelerator must be auto, kvm or tcg, not '$accel'"; exit 2 ;; esac

qemu="qemu-system-x86_64"
command -v "$qemu" >/dev/null || die "$qemu not found: install the Debian package qemu-system-x86 (scripts/install-deps.sh)"
command -v cpio >/dev/null || die "cpio not found: install the Debian package cpio"
[[ -f "$image" ]] || die "image $image not found (build it with scripts/build-guest-image.sh)"
if [[ -z "$kernel" ]]; then
  kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$kernel" ]] || die "no kernel in /boot: install the Debian package linux-image-amd64, or pass --kernel"
fi
[[ -r "$kernel" ]] || die "kernel $kernel not readable"

work=$(mktemp -d "${TMPDIR:-/tmp}/malv-vm.XXXXXX")
qemu_pid=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill -KILL "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true # gone, not a zombie, when we are
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# now_ms: milliseconds on the wall clock.
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# seconds_since MS: the time since MS, in seconds with one decimal.
seconds_since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}

# pvh_kernel BZIMAGE: prints the path of the uncompressed kernel (vmlinux)
# inside BZIMAGE when it has a PVH entry point, extracted once and cached; prints
# nothing when it cannot be had. QEMU boots such a kernel directly: under TCG
# that skips the kernel decompressing itself, about 4 of the 7 s a boot takes.
pvh_kernel() {
  local bzimage=$1 dir id out off
  [[ "${MALV_VM_PVH:-1}" != 0 ]] || return 0
  command -v xz >/dev/null && command -v readelf >/dev/null || return 0
  dir=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/malv-vm
  id=$(stat -L -c '%n %s %Y' "$bzimage" | sha256sum | cut -c1-16)
  out="$dir/vmlinux-$id"
  if [[ ! -f "$out" ]]; then
    # Debian compresses its kernels with xz: the stream starts at this magic.
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bzimage" 2>/dev/null | head -n 1 | cut -d: -f1 || true)
    [[ -n "$off" ]] || return 0
    mkdir -p "$dir" 2>/dev/null || return 0
    # (xz stops reading at the stream's end: no pipe, whose writer would fail.)
    if xz -dc --single-stream < <(tail -c +$((off + 1)) "$bzimage" 2>/dev/null) >"$out.$$" 2>/dev/null &&
      [[ $(readelf -n "$out.$$" 2>/dev/null | grep -c 'Xen.*(0x00000012)') -gt 0 ]]; then # XEN_ELFNOTE_PHYS32_ENTRY
      mv "$out.$$" "$out"
    else
      rm -f "$out.$$"
      return 0
    fi
  fi
  echo "$out"
}

# QEMU option values are comma-separated: a comma in a path is written twice.
qemu_escape() { printf '%s' "${1//,/,,}"; }

# make_initrd OUT ARGS...: the image plus a /malv-run that runs ARGS, each
# argument single-quoted for the guest's sh.
make_initrd() {
  local out=$1 arg quoted=""
  shift
  for arg in "$@"; do
    quoted+=" '${arg//\'/\'\\\'\'}'"
  done
  local dir="$work/run.$$.$RANDOM"
  mkdir -p "$dir"
  printf '#!/bin/sh\n# Written by scripts/vm-boot.sh.\n%s\n' "${quoted# }" >"$dir/malv-run"
  chmod 0755 "$dir/malv-run"
  local spec
  for spec in "${files[@]}"; do
    mkdir -p "$dir$(dirname "${spec#*:}")"
    cp "${spec%%:*}" "$dir${spec#*:}"
  done
  cp "$image" "$out"
  (cd "$dir" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
    cpio -o -H newc --owner=0:0 --quiet) | gzip -n >>"$out"
  rm -rf "$dir"
}

# run_vm ACCEL INITRD CONSOLE TIMEOUT [PIDFILE [announce]]: boots, waits; sets vm_status
# to the guest's status, or to 124 (timed out) or 125 (no status reported).
run_vm() {
  local accel=$1 initrd=$2 console_file=$3 limit=$4 pid_out=${5:-} announce=${6:-}
  local cpu=max
  [[ "$accel" == kvm ]] && cpu=host
  local args=(-nodefaults -nographic -no-reboot
    -accel "$accel" -cpu "$cpu" -m "$memory" -smp "$cpus"
    -kernel "$boot_kernel" -initrd "$initrd"
    -append "console=ttyS0 quiet panic=-1$append_extra"
    -chardev "file,id=con,path=$(qemu_escape "$console_file")" -serial chardev:con)
  if [[ -n "$ivshmem_socket" ]]; then
    args+=(-chardev "socket,path=$(qemu_escape "$ivshmem_socket"),id=ivsh"
      -device "ivshmem-doorbell,chardev=ivsh,vectors=$vectors")
  fi
  args+=("${qemu_extra[@]}")
  : >"$console_file"
  "$qemu" "${args[@]}" </dev/null >"$work/qemu.log" 2>&1 &
  qemu_pid=$!
  [[ -n "$pid_out" ]] && echo "$qemu_pid" >"$pid_out"
  [[ -n "$announce" ]] && say "qemu pid $qemu_pid"
  local deadline=$(($(now_ms) + limit * 1000)) timed_out=0 qemu_rc=0
  # (stderr closed: bash's "Killed" notice when someone SIGKILLs QEMU is noise;
  # the status says it.)
  {
    while kill -0 "$qemu_pid"; do
      if (($(now_ms) >= deadline)); then
        kill -KILL "$qemu_pid" || true
        timed_out=1
        break
      fi
      sleep 0.1
    done
    wait "$qemu_pid" || qemu_rc=$?
  } 2>/dev/null
  qemu_pid=""
  local line
  line=$(tr -d '\r' <"$console_file" | grep -aoE 'malv-guest-exit: [0-9]+$' | tail -n 1 || true)
  if [[ -n "$line" ]]; then
    vm_status=${line#malv-guest-exit: }
  elif ((timed_out)); then
    vm_status=124
  else
    vm_status=125
    vm_qemu_rc=$qemu_rc
  fi
}

boot_kernel=$(pvh_kernel "$kernel")
if [[ -n "$boot_kernel" ]]; then
  say "kernel: $kernel (booted directly as its uncompressed PVH kernel $boot_kernel)"
else
  boot_kernel=$kernel
  say "kernel: $kernel"
fi

# The accelerator: forced, or probed once and cached.
accel_reason=""
if [[ -n "${MALV_VM_ACCEL:-}" ]]; then
  accel_reason="MALV_VM_ACCEL=$MALV_VM_ACCEL"
elif [[ "$accel" != auto ]]; then
  accel_reason="--accel $accel"
elif [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  accel=tcg
  accel_reason="no usable /dev/kvm"
else
  kernel_id=$(stat -L -c '%n %s %Y' "$kernel")
  qemu_id=$("$qemu" --version | head -n 1)
  kvm_id=$(stat -L -c '%t:%T %Z' /dev/kvm)
  key=$(printf '%s\n%s\n%s\n%s\n' "$kernel_id" "$qemu_id" "$kvm_id" "$(uname -r)" | sha256sum | cut -c1-16)
  cache="${XDG_RUNTIME_DIR:-/tmp}/malv-vm-accel-$key"
  if [[ -f "$cache" ]] && read -r cached <"$cache" && [[ "$cached" == kvm || "$cached" == tcg ]]; then
    accel=$cached
    accel_reason="cached KVM probe result in $cache"
  else
    probe_limit=${MALV_VM_KVM_PROBE_TIMEOUT:-15}
    say "probing KVM: booting the image under KVM (up to ${probe_limit} s)"
    make_initrd "$work/probe.img" echo malv-kvm-probe
    probe_start=$(now_ms)
    run_vm kvm "$work/probe.img" "$work/probe.console" "$probe_limit"
    if [[ "$vm_status" == 0 ]] && grep -aq malv-kvm-probe "$work/probe.console"; then
      accel=kvm
      accel_reason="KVM probe booted the guest in $(seconds_since "$probe_start") s"
    else
      accel=tcg
      if [[ "$vm_status" == 124 ]]; then
        accel_reason="KVM probe: guest did not finish booting within ${probe_limit} s (nested virtualisation?)"
      else
        accel_reason="KVM probe: QEMU/KVM failed: $(tail -n 1 "$work/qemu.log" 2>/dev/null)"
      fi
    fi
    printf '%s\n%s\n' "$accel" "$accel_reason" >"$cache.$$" && mv "$cache.$$" "$cache"
    rm -f "$work/probe.img"
  fi
fi
say "accelerator: $accel ($accel_reason)"

make_initrd "$work/initrd.img" "$@"
start=$(now_ms)
vm_qemu_rc=0
run_vm "$accel" "$work/initrd.img" "$console" "$timeout" "$pidfile" announce
elapsed=$(seconds_since "$start")
case "$vm_status" in
  124) say "timed out after ${timeout} s: QEMU killed; console in $console" ;;
  125)
    say "the VM ended after ${elapsed} s without reporting a status (QEMU exit status $vm_qemu_rc; kernel panic or QEMU killed?); console in $console"
    [[ -s "$work/qemu.log" ]] && sed 's/^/vm-boot: qemu: /' "$work/qemu.log" >&2
    ;;
  *) say "guest command exited with status $vm_status after ${elapsed} s" ;;
esac
exit "$vm_status"
