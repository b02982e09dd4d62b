#!/usr/bin/env bash
# Fuzzes the host's handling of guest commands (tests/fuzz/fuzz_decoder.cpp).
#
#   bash scripts/fuzz.sh [seconds]      # default 60
#
# Configures build/fuzz with clang (MALV_FUZZ=ON, AddressSanitizer and
# UndefinedBehaviorSanitizer over the whole tree), builds fuzz_decoder, and
# runs it for the given time over a fresh copy of tests/fuzz/corpus/. Prints
# libFuzzer's summary (executions, exec/s, coverage) and exits non-zero if it
# found a crash, leaving the input under build/fuzz/artifacts/ and the full
# log in build/fuzz/fuzz.log. Reproduce a crash with
#   MALV_FUZZ_TRACE=1 build/fuzz/tests/fuzz/fuzz_decoder build/fuzz/artifacts/crash-...
# Environment: CC/CXX (default clang-14/clang++-14), JOBS (build jobs),
# FUZZ_ARGS (extra libFuzzer flags), COVERAGE=1 (afterwards, measure the
# source coverage the run's corpus reaches: builds build/fuzz-cov with clang's
# -fprofile-instr-generate -fcoverage-mapping and no sanitizers, runs every
# corpus input once, and prints llvm-cov's report for the session handlers
# src/microlake/session*.cpp and the checkpoint service src/offload/checkpoint*.cpp;
# the per-line view is in build/fuzz-cov/coverage.txt).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "usage: bash scripts/fuzz.sh [seconds]" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cc="${CC:-clang-14}"
cxx="${CXX:-clang++-14}"
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz.sh: $cxx not found; libFuzzer needs clang (apt-get install clang-14)" >&2
  exit 2
fi

build=build/fuzz
cmake -S . -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DMALV_FUZZ=ON -DMALV_BUILD_BENCH=OFF "-DMALV_SANITIZE=address;undefined" >/dev/null
cmake --build "$build" --target fuzz_decoder -j "${JOBS:-$(nproc)}"

corpus="$build/corpus"
artifacts="$build/artifacts"
log="$build/fuzz.log"
rm -rf "$corpus"
mkdir -p "$corpus" "$artifacts"
cp tests/fuzz/corpus/*.bin "$corpus"/

echo "fuzz.sh: running fuzz_decoder for ${seconds}s over a copy of tests/fuzz/corpus ($log)"
status=0
# shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
ASAN_OPTIONS="abort_on_error=1:detect_leaks=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$build/tests/fuzz/fuzz_decoder" \
  -max_total_time="$seconds" -max_len=4096 -timeout=30 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1 || status=$?

# A crashed fuzz_decoder leaves its checkpoint directory behind: remove the
# directories of processes that are gone.
for dir in /dev/shm/malv-fuzz-checkpoints-* "${TMPDIR:-/tmp}"/malv-fuzz-checkpoints-*; do
  [[ -d "$dir" ]] || continue
  kill -0 "${dir##*-}" 2>/dev/null || rm -rf "$dir"
done

echo "---- libFuzzer summary"
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tail -n 2 || true
grep -E '^(Done [0-9]+ runs|stat::)' "$log" || true
if [[ "${COVERAGE:-0}" == 1 ]]; then
  cov=build/fuzz-cov
  llvm_suffix="${cxx#clang++}"
  echo "fuzz.sh: measuring the corpus's source coverage ($cov)"
  cmake -S . -B "$cov" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DMALV_FUZZ=ON -DMALV_FUZZ_COVERAGE=ON -DMALV_BUILD_BENCH=OFF >/dev/null
  cmake --build "$cov" --target fuzz_decoder -j "${JOBS:-$(nproc)}" >/dev/null
  rm -f "$cov"/*.profraw
  # One process per input (a crashing input loses only its own counts); the
  # processes merge their counts into a few files as they exit (%4m).
  failed=$(find "$corpus" -type f -print0 |
    LLVM_PROFILE_FILE="$root/$cov/fuzz-%4m.profraw" xargs -0 -P "${JOBS:-$(nproc)}" -n 1 \
      sh -c '"$0" "$1" >/dev/null 2>&1 || echo "$1"' "$cov/tests/fuzz/fuzz_decoder" | wc -l)
  echo "fuzz.sh: corpus inputs that failed in the coverage build: $failed"
  "llvm-profdata$llvm_suffix" merge -sparse "$cov"/*.profraw -o "$cov/fuzz.profdata"
  sources=("$root"/src/microlake/session*.cpp "$root"/src/offload/checkpoint*.cpp)
  echo "---- coverage of the corpus ($(ls "$corpus" | wc -l) inputs)"
  "llvm-cov$llvm_suffix" report "$cov/tests/fuzz/fuzz_decoder" \
    -instr-profile="$cov/fuzz.profdata" "${sources[@]}" | sed "s|$root/||"
  "llvm-cov$llvm_suffix" show "$cov/tests/fuzz/fuzz_decoder" \
    -instr-profile="$cov/fuzz.profdata" "${sources[@]}" >"$cov/coverage.txt"
fi

crashes=$(grep -cE '^(==[0-9]+==ERROR|SUMMARY: libFuzzer|.*runtime error:)' "$log" || true)
echo "crashes: $([[ $status -eq 0 ]] && echo 0 || echo "${crashes:-1}")"
if [[ $status -ne 0 ]]; then
  echo "---- fuzz_decoder failed (exit $status); the end of $log:"
  grep -E 'invariant violated|ERROR|runtime error|SUMMARY|Test unit written|artifact' "$log" | head -n 20
  exit "$status"
fi
