"""`malv bench torch` runs end to end (tiny sizes) and reports every key."""

import json
import os
import subprocess

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")


def test_bench_torch_reports_every_key():
    malv = os.environ["MALV_BINARY"]
    run = subprocess.run([malv, "bench", "torch", "--json", "--steps", "1", "--ops", "200",
                          "--epochs", "1", "--opinfo-ops", "8"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    keys = ["resnet18_step_over_native", "mlp_step_over_native", "async_ops_per_s",
            "mlp_loop_step_over_native", "async_ops_queued_per_s", "async_native_ops_per_s",
            "sync_op_roundtrip_us",
            "opinfo_match_fraction"]
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        keys += ["hostdataset_epoch_s", "best_loader_epoch_s"]
    for key in keys:
        assert key in figures, key
        assert figures[key] > 0, key
    assert 0 < figures["opinfo_compared"] <= 8
    assert figures["opinfo_matched"] <= figures["opinfo_compared"]
    if "best_loader_epoch_s" in keys:
        assert figures["best_loader_epoch_s"] == min(figures["loader_workers0_epoch_s"],
                                                     figures["loader_workers2_epoch_s"])
    assert figures["operators_in_guest"] == 0
    # The host's own cores: the last of the machine's when it has two or more.
    cores = sorted(os.sched_getaffinity(0))
    assert figures["host_cpus"] == (str(cores[-1]) if len(cores) >= 2 else "all")
    # All of the 5 rounds' operators ran: the queueing rate bounds the whole.
    assert figures["async_ops_queued_per_s"] >= figures["async_ops_per_s"]
