"""examples/python/: each example runs against a real host."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import malv
from conftest import fashion_mnist_dir

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python")


def run_example(name, *args, env=None):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, **(env or {})))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_switch_policies_cycles_a_training_vms_policies(host):
    admin = malv.admin.Client(host.admin_socket)
    names = [f"{m.module}/{p.name}" for m in admin.policies() for p in m.policies
             if p["class"] == "gpu_sched"]
    assert len(names) >= 2, names
    count, dims = 64, 8
    np.arange(count * dims, dtype=np.float32).tofile(os.path.join(host.data_dir, "ex.f32"))
    np.zeros(count, np.uint8).tofile(os.path.join(host.data_dir, "ex.labels"))
    stop = threading.Event()
    conn = malv.connect(socket=host.socket, vm="train-a", token="secret-a")
    ds = malv.data.HostDataset("ex.f32", batch_size=8, format="raw-f32", labels="ex.labels",
                               dims=dims, classes=1, conn=conn)

    def train():  # a guest busy with the host's data pipeline all along
        while not stop.is_set():
            ds.next_batch()

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        rounds = run_example("switch_policies.py", "--admin", host.admin_socket, "--vm",
                             "train-a", "--policies", ",".join(names[:2]), "--every", "1",
                             "--rounds", "4")
    finally:
        stop.set()
        trainer.join()
        conn.close()
    assert [r["policy"] for r in rounds] == [names[0], names[1], names[0], names[1]]
    assert all(r["commands"] > 0 and r["errors"] == 0 for r in rounds), rounds


def test_switch_policies_names_an_unknown_vm(host):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, "switch_policies.py"),
                           "--admin", host.admin_socket, "--vm", "no-such-vm", "--policies",
                           "builtin/fifo", "--rounds", "1", "--every", "0.1"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 1
    assert "no-such-vm" in done.stderr


needs_fashion_mnist = pytest.mark.skipif(
    fashion_mnist_dir() is None,
    reason="dataset-fashion-mnist is not installed (scripts/install-deps.sh)")


def training_env(host):
    env = {"MALV_SOCKET": host.socket, "MALV_VM": "train-a", "MALV_TOKEN": "secret-a",
           "OMP_NUM_THREADS": "1"}
    # The CPU reference with the BLAS kernels the host runs (its device name says which).
    with malv.connect(socket=host.socket, vm="train-a", token="secret-a") as probe:
        name = probe.device_info()["name"]
    if name.startswith("OpenBLAS (") and ")" in name:
        env["OPENBLAS_CORETYPE"] = name[len("OpenBLAS ("):name.index(")")]
    return env


def check_resume(host, model, steps, extra=()):
    """The run resumed from its host checkpoint ends as the run straight through."""
    env = training_env(host)
    args = ["--model", model, "--log-every", "1", *extra]
    straight = run_example("train_fashion_mnist.py", *args, "--steps", str(steps), env=env)
    half = steps // 2
    first = run_example("train_fashion_mnist.py", *args, "--steps", str(half), "--checkpoint",
                        f"{model}-ex", env=env)
    resumed = run_example("train_fashion_mnist.py", *args, "--steps", str(steps), "--checkpoint",
                          f"{model}-ex", "--resume", env=env)
    assert first[-1]["done"] == half and resumed[-1]["done"] == steps
    assert resumed[-1] == straight[-1]  # the same parameters, bit for bit
    after = [r for r in straight if r.get("step", 0) > half]
    assert [r for r in resumed if "loss" in r] == after  # the same losses after the resume
    return straight, env


@needs_fashion_mnist
def test_the_mlp_on_the_device_resumes_bit_for_bit_and_matches_the_cpu(host):
    pytest.importorskip("torch")
    straight, env = check_resume(host, "mlp", 40)
    on_cpu = run_example("train_fashion_mnist.py", "--model", "mlp", "--log-every", "1",
                         "--steps", "40", "--device", "cpu", env=env)
    # The same program on torch's CPU: the same losses at every step. Not
    # bit for bit: the host's libtorch and the guest's may split a GEMM
    # differently among threads (docs/torch.md); within 1e-5 relative.
    device_losses = [r["loss"] for r in straight if "loss" in r]
    cpu_losses = [r["loss"] for r in on_cpu if "loss" in r]
    assert len(device_losses) == len(cpu_losses) == 40
    assert device_losses == pytest.approx(cpu_losses, rel=1e-5)


@needs_fashion_mnist
def test_resnet18_on_the_device_resumes_bit_for_bit(host):
    pytest.importorskip("torchvision")
    check_resume(host, "resnet18", 4, extra=("--batch", "16"))
