#!/bin/sh
# `malv memory replay` as a user runs it: a trace written here by an
# independent encoder of the documented format (src/vgpu/access_trace.h),
# replayed with --json and checked against the counts computed by hand in
# tests/vgpu/trace_replay_test.cpp (three buffers of 100 bytes, room for two).
# Usage: memory_replay_cli.sh MALV
set -u
malv=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-memory-replay-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

/usr/bin/python3 - "$work/three.trace" <<'PY' || fail "could not write the trace"
import struct, sys
READ, WRITE, ALLOC, FREE = 0, 1, 2, 3
records = [(0, 1, ALLOC), (0, 2, ALLOC), (0, 3, ALLOC),
           (0, 1, WRITE), (1, 2, WRITE), (2, 3, WRITE), (3, 3, READ), (4, 1, READ), (5, 2, READ)]
with open(sys.argv[1], "wb") as f:
    f.write(b"MALVTRC\0" + struct.pack("<II", 1, 40))
    for t, (op, buf, kind) in enumerate(records):
        f.write(struct.pack("<QQQqB7x", op, buf, 100, t * 1000, kind))
PY

"$malv" memory replay "$work/three.trace" --capacity-bytes 200 --window 1 --json \
  >"$work/out.json" 2>"$work/err" || { cat "$work/err" >&2; fail "replay --json failed"; }
/usr/bin/python3 - "$work/out.json" <<'PY' || fail "unexpected JSON: $(cat "$work/out.json")"
import json, sys
out = json.load(open(sys.argv[1]))
assert out["records"] == 9 and out["ops"] == 6 and out["buffers"] == 3, out
assert out["capacity_bytes"] == 200 and out["window_ops"] == 1, out
assert out["largest_op_bytes"] == 100 and out["peak_allocated_bytes"] == 300, out
got = {r["policy"]: r for r in out["results"]}
assert list(got) == ["lru", "lookahead", "belady"], list(got)
want = {"lru": (200, 300, 2, 3), "lookahead": (100, 200, 1, 2), "belady": (100, 200, 1, 2)}
for policy, (bin_, bout, faults, evictions) in want.items():
    r = got[policy]
    assert (r["bytes_in"], r["bytes_out"], r["faults"], r["evictions"]) == \
        (bin_, bout, faults, evictions), (policy, r)
    assert r["bytes_moved"] == bin_ + bout, (policy, r)
assert abs(got["lru"]["bytes_over_belady"] - 500 / 300) < 1e-9, got["lru"]
assert got["belady"]["bytes_over_belady"] == 1.0, got["belady"]
PY

# One policy, in MiB, as a table; everything fits: nothing moves.
"$malv" memory replay "$work/three.trace" --capacity-mib 1 --policy lru >"$work/table" 2>&1 ||
  fail "replay --capacity-mib failed: $(cat "$work/table")"
grep -q "OVER BELADY" "$work/table" || fail "no table header: $(cat "$work/table")"
grep -Eq "^lru +0 +0 +0 +0 +0 +1.000" "$work/table" || fail "lru row: $(cat "$work/table")"

# A capacity below the largest op is refused, naming the sizes (exit 1).
status=0
"$malv" memory replay "$work/three.trace" --capacity-bytes 99 >"$work/out" 2>"$work/err" || status=$?
[ "$status" -eq 1 ] || fail "capacity 99: exit status $status, expected 1"
grep -q "100 bytes in all, more than the capacity of 99 bytes" "$work/err" ||
  fail "capacity 99: $(cat "$work/err")"

# A malformed trace is refused naming the file and the record (exit 1).
head -c 50 "$work/three.trace" >"$work/short.trace"
status=0
"$malv" memory replay "$work/short.trace" --capacity-bytes 200 >"$work/out" 2>"$work/err" || status=$?
[ "$status" -eq 1 ] || fail "truncated trace: exit status $status, expected 1"
grep -q "short.trace: record 0: truncated: 34 of 40 bytes" "$work/err" ||
  fail "truncated trace: $(cat "$work/err")"

# Usage errors (exit 2): no capacity, both capacities, an unknown policy.
for args in "" "--capacity-mib 1 --capacity-bytes 5" "--capacity-bytes 200 --policy mru" \
  "--capacity-bytes 0" "--capacity-mib nan"; do
  status=0
  # shellcheck disable=SC2086
  "$malv" memory replay "$work/three.trace" $args >"$work/out" 2>"$work/err" || status=$?
  [ "$status" -eq 2 ] || fail "replay $args: exit status $status, expected 2: $(cat "$work/err")"
done

"$malv" memory --help | grep -q "replay" || fail "malv memory --help does not list replay"
"$malv" memory replay --help | grep -q "Example" || fail "malv memory replay --help has no example"
echo "memory replay: all checks passed"
