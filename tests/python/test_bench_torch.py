"""`malv bench torch` runs end to end (tiny sizes) and reports every key."""

import json
import os
import subprocess

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")


def test_bench_torch_reports_every_key():
    malv = os.environ["MALV_BINARY"]
    run = subprocess.run([malv, "bench", "torch", "--json", "--steps", "1", "--ops", "200"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    for key in ("resnet18_step_over_native", "mlp_step_over_native", "async_ops_per_s",
                "sync_op_roundtrip_us"):
        assert key in figures, key
        assert figures[key] > 0, key
    assert figures["operators_in_guest"] == 0
