# Sourced by the shell tests that run a host of their own; needs $malv.
# Sets $work, a private directory removed at exit (after the host, if one
# was started, is stopped), and defines:
#   fail MESSAGE [FILE...]   prints the message and the files, exits 1
#   start_host [ARG...]      runs `malv serve ARG...` on $work/malv.sock and
#                            $work/admin.sock, returns once it is ready
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-cli-test-XXXXXX")
host=""
cleanup() {
  if [ -n "$host" ]; then
    kill -TERM "$host" 2>/dev/null || true
    wait "$host" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "$1" >&2
  shift
  for f in "$@"; do cat "$f" >&2; done
  exit 1
}
start_host() {
  "$malv" serve "$@" --socket "$work/malv.sock" --admin-socket "$work/admin.sock" \
    >"$work/serve.out" 2>"$work/serve.err" &
  host=$!
  tries=0
  until grep -q '^ready ' "$work/serve.out"; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] && kill -0 $host 2>/dev/null || fail "the host did not start" "$work/serve.err"
    sleep 0.1
  done
}
