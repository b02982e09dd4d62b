"""PyTorch's OpInfo database on the malv device (python -m malv.opinfo_conformance).

Every float32 operator's sample inputs on the device and on the CPU; the
measured match fraction (docs/torch.md lists each operator that does not
match and why) must not fall, and every failure comes with its reason.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")


def test_opinfo_conformance_holds_its_measured_fraction(host):
    run = subprocess.run([sys.executable, "-W", "ignore", "-m", "malv.opinfo_conformance",
                          "--socket", host.socket, "--vm", "train-a", "--token", "secret-a",
                          "--json"],
                         capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["opinfo_compared"] > 550
    # 0.954 measured on a host that denies nothing (0.949 on this test's host,
    # which denies aten::cumsum: conftest.py); held with a margin of about ten
    # operators for another machine's CPU (its BLAS kernels, its LAPACK paths).
    assert result["opinfo_match_fraction"] >= 0.93, sorted(result["failures"])
    assert "does not run aten::cumsum" in result["failures"]["cumsum"]
    assert all(why for why in result["failures"].values())
