#!/bin/sh
# `malv bench memory --quick --json` runs every phase (probe, paced and
# unpaced hosts, Belady replays) and every run keeps the parameters of the
# run where everything fits. Timings are never asserted.
# Usage: bench_memory_quick.sh <path to malv>
set -e
out=$("$1" bench memory --quick --json)
printf '%s\n' "$out" | /usr/bin/python3 -c '
import json, sys
report = json.load(sys.stdin)
results = report["results"]
keys = {"workload", "policy", "variant", "resident_fraction", "time_over_fit",
        "time_over_fit_unpaced", "bytes_moved", "bytes_over_belady", "faults",
        "prefetch_hits", "prefetches", "bit_identical", "belady_bytes"}
runs = {(r["policy"], r["variant"], r["resident_fraction"]) for r in results}
want = {(p, v, f) for p in ("lru", "lookahead", "learned") for v in ("queued", "sync")
        for f in (1, 0.667, 0.5, 0.333)}
problems = []
if runs != want or len(results) != len(want):
    problems.append("runs %s, expected %s" % (sorted(runs), sorted(want)))
for r in results:
    run = "%s/%s/%s" % (r["policy"], r["variant"], r["resident_fraction"])
    missing = keys - set(r)
    if missing:
        problems.append("%s: no %s" % (run, sorted(missing)))
        continue
    if r["workload"] != "mlp":
        problems.append("%s: workload %r" % (run, r["workload"]))
    if r["bit_identical"] is not True:
        problems.append("%s: parameters differ from the run where everything fits" % run)
    if r["resident_fraction"] == 1 and r["bytes_moved"] != 0:
        problems.append("%s: moved %d bytes although everything fits" % (run, r["bytes_moved"]))
    if r["resident_fraction"] == 0.333 and not r["bytes_moved"] > 0:
        problems.append("%s: moved nothing at a third of the footprint" % run)
    over = r["bytes_over_belady"]
    if over is None or over < 1:
        # Belady (furthest next use) is not the optimum with buffers of
        # different sizes and dirty write-backs: report, do not fail.
        print("note: %s: bytes_over_belady %s" % (run, over), file=sys.stderr)
if problems:
    print("malv bench memory --quick --json:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
'
