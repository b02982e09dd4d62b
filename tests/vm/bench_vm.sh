#!/bin/sh
# `malv bench vm --json` runs end to end (a short run) and reports every key
# docs/benchmarks.md names, with sane values.
# Usage: bench_vm.sh MALV
set -eu
malv=$1
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "SKIP: no kernel in /boot"; exit 77; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "SKIP: no dataset"; exit 77; }
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$malv" bench vm --json --steps 20 --repeats 1 --pings 50 >"$out" 2>"$err" || {
  cat "$err" >&2
  exit 1
}
/usr/bin/python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keys = ["native_s", "process_s", "qemu_s", "qemu_over_native", "qemu_over_process",
        "qemu_shm_roundtrip_p50_us", "qemu_shm_roundtrip_p99_us", "process_shm_roundtrip_p50_us",
        "native_step_ms", "process_step_ms", "qemu_step_ms", "process_guest_cpu_step_ms",
        "qemu_guest_cpu_step_ms", "accel", "steps", "repeats", "vcpus"]
missing = [k for k in keys if k not in d]
assert not missing, f"missing keys {missing}: {d}"
assert d["accel"] in ("kvm", "tcg"), d["accel"]
for k in keys[:-4]:
    assert isinstance(d[k], (int, float)) and d[k] > 0, f"{k} = {d[k]}"
ratio = d["qemu_s"] / d["native_s"]
assert abs(d["qemu_over_native"] - ratio) < 1e-6 * ratio + 1e-9, "one round: the ratio is qemu_s / native_s"
assert d["qemu_shm_roundtrip_p50_us"] <= d["qemu_shm_roundtrip_p99_us"]
print("bench vm:", {k: d[k] for k in ("accel", "qemu_over_native", "qemu_shm_roundtrip_p50_us")})
PY
