#!/bin/sh
# The malv package as `cmake --install` put it (the install.prefix fixture's
# prefix): importable from <prefix>/<python dir> alone, its extension loading
# the prefix's own libmalv.
# Usage: installed_package.sh <python3> <prefix.path file> <python dir relative to the prefix>
set -eu
python=$1
prefix=$(cat "$2")/prefix  # the state file names the fixture's directory
dir="$prefix/$3"
[ -f "$dir/malv/__init__.py" ] || { echo "no malv package in $dir" >&2; exit 1; }
cd /
PYTHONPATH="$dir" "$python" - "$prefix" <<'PY'
import os, sys
import malv
prefix = os.path.realpath(sys.argv[1])
assert os.path.realpath(malv.__file__).startswith(prefix), malv.__file__
assert os.path.realpath(malv._malv.__file__).startswith(prefix), malv._malv.__file__
with open("/proc/self/maps") as maps:
    libmalv = {line.split()[-1] for line in maps if "libmalv.so" in line}
assert libmalv and all(os.path.realpath(p).startswith(prefix) for p in libmalv), libmalv
try:
    malv.connect(socket=os.path.join(prefix, "no.sock"))
except malv.NotFound as e:
    print("installed malv package works:", e.code)
PY
