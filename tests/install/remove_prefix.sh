#!/bin/sh
# Fixture cleanup: removes the prefix install_prefix.sh made, and its record.
# Usage: remove_prefix.sh <state file>
set -eu
state=$1
if [ -f "$state" ]; then
  rm -rf "$(cat "$state")"
  rm -f "$state"
fi
