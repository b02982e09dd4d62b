# Sourced by the shell tests that run a host of their own; needs $malv.
# Sets $work, a private directory removed at exit (after the host, if one
# was started, is stopped), and defines:
#   fail MESSAGE [FILE...]   prints the message and the files, exits 1
#   start_host [ARG...]      runs `malv serve ARG...` on $work/malv.sock and
#                            $work/admin.sock, returns once it is ready
#   stop_host                SIGTERM, then waits (at most 30 s: then it fails,
#                            printing the host's stacks)
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-cli-test-XXXXXX")
host=""
# Stops the host with SIGTERM and waits for it; a host still there 30 s later
# is a failed test: its threads' stacks (gdb, when there) and its log are
# printed, then it is killed, so a shutdown that hangs says where.
stop_host() {
  kill -TERM "$host" 2>/dev/null || return 0
  tries=0
  while kill -0 "$host" 2>/dev/null; do
    if ! [ -d "/proc/$host" ] || grep -q '^State:.*Z' "/proc/$host/status" 2>/dev/null; then
      break  # exited, not yet reaped
    fi
    tries=$((tries + 1))
    if [ $tries -ge 300 ]; then
      echo "the host (pid $host) did not stop within 30 s of SIGTERM" >&2
      if command -v gdb >/dev/null; then
        gdb -p "$host" -batch -ex "thread apply all bt" 2>&1 | grep -v '^\[New LWP' >&2 || true
      fi
      tail -n 40 "$work/serve.err" >&2 || true
      kill -KILL "$host" 2>/dev/null || true
      wait "$host" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
  wait "$host" 2>/dev/null || true
}
cleanup() {
  status=$?
  if [ -n "$host" ]; then
    stop_host || status=1
    host=""
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
fail() {
  echo "$1" >&2
  shift
  for f in "$@"; do cat "$f" >&2; done
  exit 1
}
start_host() {
  # A previous host's "ready" line must not be read before the new host's
  # redirect truncates the file (the shell forks first): start from none.
  rm -f "$work/serve.out"
  "$malv" serve "$@" --socket "$work/malv.sock" --admin-socket "$work/admin.sock" \
    >"$work/serve.out" 2>"$work/serve.err" &
  host=$!
  tries=0
  until grep -qs '^ready ' "$work/serve.out"; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] && kill -0 $host 2>/dev/null || fail "the host did not start" "$work/serve.err"
    sleep 0.1
  done
}
