"""Runs one pytest file of the malv Python package for ctest (label python).

Exits 77 (ctest: skipped) with the reason when this python3 lacks pytest or
numpy, which scripts/install-deps.sh installs (python3-pytest, python3-numpy);
a test that needs torch skips itself the same way.
Usage: run_pytest.py <test file> [pytest arguments...]
"""

import importlib
import sys

for module in ("pytest", "numpy"):
    try:
        importlib.import_module(module)
    except ImportError:
        print(f"SKIPPED: {sys.executable} has no module {module!r} "
              "(scripts/install-deps.sh installs it)")
        sys.exit(77)

import pytest  # noqa: E402

sys.exit(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", *sys.argv[1:]]))
