#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go, on a machine that has one.
#
#   bash scripts/gpu-check.sh [RESULTS_DIR]   # default: build/gpu-results/<date>-<host>
#
# 1. Records the machine (nvidia-smi, nvcc, the commit).
# 2. Configures and builds the release preset (the CUDA toolkit must be
#    found: the CUDA backend plugin has to exist afterwards).
# 3. Runs the tests labelled `gpu` (ctest -L gpu): the backend conformance
#    suite on CUDA and the CUDA-only tests. They skip without a device, so
#    here every one of them skipping is a failure too.
# 4. Runs `malv bench ipc`, `mlaas`, `sharing` and `overhead` with
#    `--backend cuda --json`. A bench whose --help has no --backend option
#    is recorded as not run (it would measure the CPU backend); `bench
#    overhead` failing is tolerated with a note.
# 5. Runs `malv bench cuda --json`: sgemm and copies through a VM against
#    cuBLAS and pinned memory directly, and the inference crossover.
#
# Everything lands in RESULTS_DIR: one log or JSON file per step and
# summary.txt, one line per step. Copy the figures into docs/benchmarks.md.
# Exits 0 when the build, the gpu tests and `bench cuda` passed, else 1.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
out="${1:-build/gpu-results/$(date +%Y%m%d-%H%M%S)-$(hostname -s)}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failed=0

note() { echo "$*" | tee -a "$summary"; }
fail() {
  note "FAIL $*"
  failed=1
}

# 1. The machine.
git rev-parse HEAD >"$out/commit.txt" 2>&1
git status --short >>"$out/commit.txt" 2>&1
if nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
  note "OK   nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
else
  fail "nvidia-smi: no NVIDIA driver or GPU here (see $out/nvidia-smi.txt)"
fi
{ command -v nvcc && nvcc --version; } >"$out/nvcc.txt" 2>&1 ||
  /usr/local/cuda/bin/nvcc --version >>"$out/nvcc.txt" 2>&1

# 2. Build.
if ! cmake --preset release >"$out/configure.log" 2>&1; then
  fail "configure (see $out/configure.log)"
  exit 1
fi
if ! cmake --build --preset release -j "$(nproc)" >"$out/build.log" 2>&1; then
  fail "build (see $out/build.log)"
  exit 1
fi
if [[ ! -f build/release/src/accel/cuda/libmalv_accel_cuda.so ]]; then
  fail "build: the CUDA backend was not built (no CUDA toolkit found? see $out/configure.log)"
  exit 1
fi
note "OK   build (release)"
malv=build/release/src/cli/malv

# 3. The gpu tests.
ctest --test-dir build/release -L gpu -V >"$out/ctest-gpu.log" 2>&1
ctest_rc=$?
total=$(grep -Eo 'out of [0-9]+' "$out/ctest-gpu.log" | tail -1 | grep -Eo '[0-9]+')
skipped=$(grep -c '\*\*\*Skipped' "$out/ctest-gpu.log")
if [[ $ctest_rc -ne 0 ]]; then
  fail "ctest -L gpu (see $out/ctest-gpu.log)"
elif [[ -z "$total" || "$skipped" -eq "$total" ]]; then
  fail "ctest -L gpu: every test skipped; the first reason: $(grep -A1 ': Skipped$' "$out/ctest-gpu.log" | grep -v ': Skipped$' | head -1 | sed 's/^[0-9]*: //')"
else
  note "OK   ctest -L gpu: $total tests, $skipped skipped"
fi

# 4. The benchmarks on the CUDA backend.
for bench in ipc mlaas sharing overhead; do
  if ! help="$("$malv" bench "$bench" --help 2>&1)"; then
    if [[ $bench == overhead ]]; then
      note "NOTE bench overhead: not in this malv yet (being written); skipped"
    else
      fail "bench $bench: not in this malv"
    fi
    continue
  fi
  if ! grep -q -- '--backend' <<<"$help"; then
    note "NOTE bench $bench: NOT RUN, it has no --backend option yet (it would measure the CPU)"
    continue
  fi
  if "$malv" bench "$bench" --backend cuda --json >"$out/bench-$bench.json" 2>"$out/bench-$bench.log"; then
    note "OK   bench $bench --backend cuda (bench-$bench.json)"
  elif [[ $bench == overhead ]]; then
    note "NOTE bench overhead failed, tolerated (work in progress): $(tail -1 "$out/bench-$bench.log")"
  else
    fail "bench $bench --backend cuda: $(tail -1 "$out/bench-$bench.log")"
  fi
done

# 5. CUDA through a VM vs CUDA directly.
if "$malv" bench cuda --json >"$out/bench-cuda.json" 2>"$out/bench-cuda.log"; then
  note "OK   bench cuda (bench-cuda.json)"
else
  fail "bench cuda: $(tail -1 "$out/bench-cuda.log")"
fi

note "results in $out"
exit "$failed"
