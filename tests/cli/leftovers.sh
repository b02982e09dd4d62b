# Sourced by the demo tests. no_leftovers DIR: fails if DIR (the TMPDIR the
# demo ran with) still holds anything, or any process still names it on its
# command line (a guest or host the demo failed to stop).
no_leftovers() {
  if [ -n "$(ls -A "$1")" ]; then
    echo "left behind in $1:" >&2
    ls -lR "$1" >&2
    return 1
  fi
  for cmdline in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -qF "$1/"; then
      echo "process left behind: $(tr '\0' ' ' <"$cmdline")" >&2
      return 1
    fi
  done
  return 0
}
