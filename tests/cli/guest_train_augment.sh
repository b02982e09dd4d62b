#!/bin/sh
# `malv guest train --native --augment`: the guest augments its own batches
# (random crop, flip, noise) and trains; two runs with the same seed print the
# same losses, which differ from a plain run's; --augment with --host-data is
# refused (the host's pipeline does not augment), before any host is asked, and
# --augment-noise without --augment is a usage error.
# Usage: guest_train_augment.sh <path to malv>
set -eu
malv=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/host_test_lib.sh"

# The loss lines without their throughput, which differs from run to run.
losses() { grep '^epoch .* loss ' "$1" | sed 's/  [0-9.]* examples\/s.*//'; }

train() {
  out=$1
  shift
  "$malv" guest train --native --epochs 1 --max-steps 5 --log-every 1 "$@" >"$out" 2>&1 ||
    fail "malv guest train --native $* failed" "$out"
}
train "$work/a.out" --augment
train "$work/b.out" --augment
train "$work/plain.out"
train "$work/strong.out" --augment --augment-pad 6 --augment-noise 0.3

grep -q '^data: augmenting every batch on this CPU' "$work/a.out" ||
  fail "--augment does not say that it augments" "$work/a.out"
grep -q 'augmenting' "$work/plain.out" && fail "a plain run says it augments" "$work/plain.out"
grep -q 'padding 6, .*sigma 0.3' "$work/strong.out" ||
  fail "--augment-pad/--augment-noise are not the ones used" "$work/strong.out"
[ "$(losses "$work/a.out" | wc -l)" -eq 5 ] || fail "not 5 loss lines" "$work/a.out"
grep -q '^test accuracy ' "$work/a.out" || fail "no test accuracy" "$work/a.out"
[ "$(losses "$work/a.out")" = "$(losses "$work/b.out")" ] ||
  fail "two augmented runs with the same seed differ" "$work/a.out" "$work/b.out"
[ "$(losses "$work/a.out")" != "$(losses "$work/plain.out")" ] ||
  fail "an augmented run has the losses of a plain one" "$work/a.out" "$work/plain.out"
[ "$(losses "$work/a.out")" != "$(losses "$work/strong.out")" ] ||
  fail "stronger augmentation changes nothing" "$work/a.out" "$work/strong.out"

# The host pipeline does not augment: refused, naming both, before connecting
# (nothing listens on this socket).
status=0
"$malv" guest train --socket "$work/nobody.sock" --augment --host-data fashion-mnist \
  >"$work/refused.out" 2>&1 || status=$?
[ "$status" -eq 1 ] || fail "--augment --host-data: exit status $status, expected 1" "$work/refused.out"
grep -q -- "--augment.*--host-data.*does not augment" "$work/refused.out" ||
  fail "--augment --host-data: the refusal does not say why" "$work/refused.out"

status=0
"$malv" guest train --native --augment-noise 0.2 >"$work/needs.out" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "--augment-noise alone: exit status $status, expected 2" "$work/needs.out"
grep -q -- "--augment-noise.*--augment" "$work/needs.out" ||
  fail "--augment-noise alone: the message does not name --augment" "$work/needs.out"
echo "ok"
