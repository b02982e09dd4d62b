#!/bin/sh
# `malv mllb train` and `malv mllb eval` as a user runs them: a hand-made
# dump (written here, in MLLB's 30 columns) trained on and scored with
# --json (every documented key, exact figures for a model trained to the
# one rule the dump follows), then the real dump and the shipped model when
# ../shared/data/mllb is there; bad input refused naming the file and the
# line (exit 1), bad flags are usage errors (exit 2).
# Usage: mllb_cli.sh MALV DATA_DIR SHIPPED_MODEL
set -u
malv=$1
data_dir=$2
shipped=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-mllb-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# 200 rows: threads that never ran (delta 41) are moved, the others not;
# every fifth row is a running thread (never moved).
/usr/bin/python3 - "$work/tiny.csv" <<'PY' || { echo "FAIL: could not write the dump" >&2; exit 1; }
import sys
cols = ("ts,curr_pid,pid,src_cpu,dst_cpu,imbalance,src_len,src_numa_len,src_preferred_len,delta,"
        "cpu_idle,cpu_not_idle,cpu_newly_idle,same_node,prefer_src,prefer_dst,delta_faults,"
        "total_faults,dst_len,src_load,dst_load,nr_fails,cache_nice_tries,buddy_hot,throttled,"
        "p_running,test_aggressive,can_migrate,pc_0,pc_1").split(",")
with open(sys.argv[1], "w") as f:
    f.write(",".join(cols) + "\n")
    for i in range(200):
        ts = 10**12 + i * 10**6
        running = i % 5 == 0
        fresh = not running and i % 3 == 0
        v = dict.fromkeys(cols, 0)
        v.update(ts=ts, pid=100 + i % 7, src_cpu=1, dst_cpu=2 + i % 4, cpu_newly_idle=1,
                 same_node=1, cache_nice_tries=1, p_running=int(running),
                 delta=41 if fresh else -(ts - 2 * 10**9 - 10**5 * (i % 9)),
                 can_migrate=int(fresh))
        f.write(",".join(str(v[c]) for c in cols) + "\n")
PY

# LAKE's layout with every weight 0 and b2 = 1: a reference that always says yes.
/usr/bin/python3 -c "
import json
json.dump({'w1': [[0] * 10] * 15, 'b1': [0] * 10, 'w2': [0] * 10, 'b2': 1.0},
          open('$work/yes.json', 'w'))" || fail "could not write the reference"

# Train, --json: the held-out figures and the training time.
if ! "$malv" mllb train "$work/tiny.csv" --out "$work/m.safetensors" --epochs 40 --seed 3 \
  --reference "$work/yes.json" --json >"$work/train.json" 2>"$work/train.err"; then
  fail "mllb train on the hand-made dump: $(cat "$work/train.err")"
fi
/usr/bin/python3 - "$work/train.json" <<'PY' || fail "mllb train --json: $(cat "$work/train.json")"
import json, sys
r = json.load(open(sys.argv[1]))
for key in ("model", "features", "train_rows", "holdout_rows", "training_seconds", "train",
            "holdout_all", "holdout_not_running", "published_accuracy", "threshold"):
    assert key in r, key
assert r["holdout_rows"] == 40 and r["train_rows"] == 160, r
for key in ("rows", "accuracy", "precision", "recall", "majority_accuracy", "reference_accuracy"):
    assert key in r["holdout_all"], key
assert r["holdout_all"]["accuracy"] == 1.0, r["holdout_all"]
h = r["holdout_all"]
assert h["positives"] == 11 and abs(h["reference_accuracy"] - 11 / 40) < 1e-12, h
PY

# Eval, --json, every row and the not-running ones: exact figures.
for rows in all not-running; do
  if ! "$malv" mllb eval "$work/tiny.csv" --model "$work/m.safetensors" --rows $rows \
    --reference "$work/yes.json" --json \
    >"$work/eval-$rows.json" 2>"$work/eval.err"; then
    fail "mllb eval --rows $rows: $(cat "$work/eval.err")"
  fi
done
/usr/bin/python3 - "$work/eval-all.json" "$work/eval-not-running.json" <<'PY' || fail "mllb eval --json figures"
import json, sys
a = json.load(open(sys.argv[1]))
n = json.load(open(sys.argv[2]))
for r in (a, n):
    for key in ("rows", "accuracy", "precision", "recall", "majority_accuracy",
                "reference_accuracy", "scored", "balanced_accuracy", "model", "data"):
        assert key in r, key
# 200 rows, 40 running, 53 that never ran (i % 3 == 0 among the others).
assert a["scored"] == "all" and a["rows"] == 200 and a["positives"] == 53, a
assert n["scored"] == "not-running" and n["rows"] == 160 and n["positives"] == 53, n
assert a["accuracy"] == 1.0 and a["precision"] == 1.0 and a["recall"] == 1.0, a
assert abs(a["majority_accuracy"] - 147 / 200) < 1e-12, a
assert abs(n["majority_accuracy"] - 107 / 160) < 1e-12, n
assert abs(a["reference_accuracy"] - 53 / 200) < 1e-12, a
assert abs(n["reference_accuracy"] - 53 / 160) < 1e-12, n
PY

# Text output names the rows scored.
"$malv" mllb eval "$work/tiny.csv" --model "$work/m.safetensors" >"$work/eval.txt" 2>&1 ||
  fail "mllb eval text: $(cat "$work/eval.txt")"
grep -q "scored: every row (200 rows, 53 labelled 1)" "$work/eval.txt" ||
  fail "mllb eval text: $(cat "$work/eval.txt")"

# The real dump with LAKE's reference beside it, and the shipped model.
if [ -f "$data_dir/raw_tag1.csv" ] && [ -f "$shipped" ]; then
  if ! "$malv" mllb eval "$data_dir/raw_tag1.csv" --model "$shipped" --rows not-running --json \
    >"$work/real.json" 2>"$work/real.err"; then
    fail "mllb eval on raw_tag1.csv: $(cat "$work/real.err")"
  fi
  /usr/bin/python3 - "$work/real.json" <<'PY' || fail "mllb eval on raw_tag1.csv: $(cat "$work/real.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["rows"] == 672, r
assert abs(r["reference_accuracy"] - 0.847) < 0.001, r
assert r["accuracy"] >= r["majority_accuracy"], r
PY
else
  echo "skipping the real dump: no $data_dir/raw_tag1.csv or $shipped"
fi

# Bad input: exit 1, the file and the line named.
head -n 3 "$work/tiny.csv" >"$work/bad.csv"
echo "1,2,3" >>"$work/bad.csv"
"$malv" mllb eval "$work/bad.csv" --model "$work/m.safetensors" >/dev/null 2>"$work/bad.err"
status=$?
[ $status -eq 1 ] || fail "malformed dump: exit $status, expected 1"
grep -q "bad.csv:4: 3 fields, the header names 30 columns" "$work/bad.err" ||
  fail "malformed dump: $(cat "$work/bad.err")"
sed 's/^\(1000000000000\),/\1.5,/' "$work/tiny.csv" >"$work/frac.csv"
"$malv" mllb train "$work/frac.csv" --out "$work/x.safetensors" >/dev/null 2>"$work/frac.err"
status=$?
[ $status -eq 1 ] || fail "non-integer field: exit $status, expected 1"
grep -q "frac.csv:2: column 1 ('ts'): '1000000000000.5' is not an integer" "$work/frac.err" ||
  fail "non-integer field: $(cat "$work/frac.err")"
"$malv" mllb eval "$work/tiny.csv" --model "$work/nonexistent.safetensors" >/dev/null 2>&1
[ $? -eq 1 ] || fail "a missing model file: expected exit 1"
MALV_MLLB_DATA= "$malv" mllb train --out "$work/x.safetensors" >/dev/null 2>"$work/nodata.err"
status=$?
[ $status -eq 1 ] || fail "no data: exit $status, expected 1"
grep -q "MALV_MLLB_DATA" "$work/nodata.err" || fail "no data: $(cat "$work/nodata.err")"
MALV_MLLB_DATA="$work/tiny.csv" "$malv" mllb train --out "$work/env.safetensors" --epochs 2 \
  >/dev/null 2>&1 || fail "MALV_MLLB_DATA is not used"

# Bad flags: usage errors.
"$malv" mllb eval "$work/tiny.csv" --rows some >/dev/null 2>&1
[ $? -eq 2 ] || fail "--rows some: expected exit 2"
"$malv" mllb train "$work/tiny.csv" >/dev/null 2>&1
[ $? -eq 2 ] || fail "train without --out: expected exit 2"
"$malv" mllb train "$work/tiny.csv" --out "$work/x.safetensors" --holdout 1.5 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--holdout 1.5: expected exit 2"

[ $failures -eq 0 ] || exit 1
echo "mllb commands: ok"
