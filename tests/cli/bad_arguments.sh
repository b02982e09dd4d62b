#!/bin/sh
# Bad command-line and config input is a usage error: `malv` exits 2 with a
# message that names the option (or config key) and what is wrong, and never
# aborts on an uncaught exception or silently truncates a number.
# Usage: bad_arguments.sh MALV
set -u
malv=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/malv-badargs-XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

# expect_usage_error PATTERN ARG... : `malv ARG...` exits 2 and its stderr
# matches PATTERN (grep -E); a run that would otherwise serve is cut off.
expect_usage_error() {
  pattern=$1
  shift
  status=0
  timeout 30 "$malv" "$@" >"$work/out" 2>"$work/err" </dev/null || status=$?
  if [ "$status" -ne 2 ]; then
    echo "FAIL: malv $*: exit status $status, expected 2" >&2
    cat "$work/err" >&2
    failures=$((failures + 1))
  elif ! grep -Eq -- "$pattern" "$work/err"; then
    echo "FAIL: malv $*: message does not match '$pattern':" >&2
    cat "$work/err" >&2
    failures=$((failures + 1))
  elif grep -Eq 'terminate called|Aborted|what\(\)' "$work/err"; then
    echo "FAIL: malv $*: died on an exception:" >&2
    cat "$work/err" >&2
    failures=$((failures + 1))
  fi
}

# serve_config NAME TOML : a config file for `malv serve --config`.
serve_config() {
  printf '%s\n' "$2" >"$work/$1.toml"
  echo "$work/$1.toml"
}

serve="serve --socket $work/malv.sock --admin-socket $work/admin.sock"

# malv serve: flags.
expect_usage_error "--tcp.*127\.0\.0\.1:abc.*HOST:PORT" $serve --tcp 127.0.0.1:abc
expect_usage_error "--tcp.*127\.0\.0\.1:70000.*0 to 65535" $serve --tcp 127.0.0.1:70000
expect_usage_error "--tcp.*127\.0\.0\.1:-1" $serve --tcp 127.0.0.1:-1
expect_usage_error "--tcp.*not HOST:PORT" $serve --tcp 127.0.0.1
expect_usage_error "--memory-mib.*-1" $serve --memory-mib -1
expect_usage_error "--memory-mib.*out of range" $serve --memory-mib 99999999999999
expect_usage_error "--spill-link-gbps.*out of range" $serve --spill-link-gbps -1
expect_usage_error "--spill-link-gbps.*out of range" $serve --spill-link-gbps nan
expect_usage_error "--workers.*out of range" $serve --workers 100000
expect_usage_error "--arena-mib.*out of range" $serve --arena-mib 0
expect_usage_error "--vsock-port" $serve --vsock-port 4294967296

# malv serve: the same values from the config file.
expect_usage_error "tcp.*localhost:99999.*0 to 65535" \
  $serve --config "$(serve_config tcp '[host]
tcp = "localhost:99999"')"
expect_usage_error "host\.workers must be an integer from 0 to 4096" \
  $serve --config "$(serve_config workers '[host]
workers = -1')"
expect_usage_error "host\.vsock_port must be an integer" \
  $serve --config "$(serve_config vsock '[host]
vsock_port = 4294967296')"
expect_usage_error "host\.arena_mib must be an integer" \
  $serve --config "$(serve_config arena '[host]
arena_mib = "big"')"
expect_usage_error "vm a\.max_streams must be an integer from 1" \
  $serve --config "$(serve_config streams '[[vm]]
name = "a"
max_streams = 4294967296')"
expect_usage_error "vm a\.memory_mib must be an integer from 0" \
  $serve --config "$(serve_config vmmem '[[vm]]
name = "a"
memory_mib = -1')"
expect_usage_error "vm a\.host_memory_mib must be an integer from 0" \
  $serve --config "$(serve_config vmhost '[[vm]]
name = "a"
host_memory_mib = -5')"
expect_usage_error "vm a\.max_sessions must be an integer from 0" \
  $serve --config "$(serve_config vmsessions '[[vm]]
name = "a"
max_sessions = 4294967296')"
expect_usage_error "host\.shutdown_grace_ms must be an integer" \
  $serve --config "$(serve_config grace '[host]
shutdown_grace_ms = -1')"
expect_usage_error "--shutdown-grace-ms" $serve --shutdown-grace-ms -1

# Guests.
expect_usage_error "--tcp.*1 to 65535" guest train --tcp 127.0.0.1:0
expect_usage_error "--tcp.*HOST:PORT" guest train --tcp 127.0.0.1:12abc
expect_usage_error "--tcp.*1 to 65535" guest infer --checkpoint "$work/none" --tcp 127.0.0.1:65536
expect_usage_error "--lr.*out of range" guest train --native --lr nan
expect_usage_error "--max-steps.*not a whole number" guest train --native --max-steps -1
expect_usage_error "--duration.*out of range" guest infer --checkpoint "$work/none" --native --duration inf

# Admin tools, the demo and the benchmarks.
expect_usage_error "--interval.*out of range" stats --interval nan
expect_usage_error "--memory-mib.*out of range" vm create vm-a --memory-mib -5
expect_usage_error "--virtual-memory-mib.*out of range" vm create vm-a --virtual-memory-mib -5
expect_usage_error "--virtual-memory-mib.*out of range" vm update vm-a --virtual-memory-mib inf
expect_usage_error "--weight.*out of range" vm update vm-a --weight nan
expect_usage_error "--max-streams" vm create vm-a --max-streams -3
expect_usage_error "--max-sessions" vm update vm-a --max-sessions -1
expect_usage_error "--host-memory-mib.*out of range" vm create vm-a --host-memory-mib nan
expect_usage_error "--max-checkpoints" vm update vm-a --max-checkpoints 4294967296
expect_usage_error "--rate.*out of range" demo --rate nan
expect_usage_error "--roundtrips" bench ipc --roundtrips 0
expect_usage_error "--phase-seconds.*out of range" bench sharing --phase-seconds nan

# Parse errors CLI11 finds itself are usage errors too.
expect_usage_error "--workers" $serve --workers abc
expect_usage_error "frobnicate|Extra|subcommand" frobnicate

if [ "$failures" -ne 0 ]; then
  echo "$failures case(s) failed" >&2
  exit 1
fi
echo "every bad input was refused with exit status 2"
