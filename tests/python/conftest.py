"""Fixtures of the malv Python package's tests: a real `malv serve` of their own.

ctest runs pytest with MALV_BINARY (the malv command) and PYTHONPATH (the
build tree's python/ directory) set (tests/python/CMakeLists.txt). The host
is started the way tests/cli/host_test_lib.sh starts one: its own guest and
admin sockets in a private directory, a config with VMs and tokens, ready
once it prints its `ready` line; it is stopped with SIGTERM (30 s at most,
then the test fails with its log).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

HOST_CONFIG = """
[host]
backend = "cpu"
memory_mib = 1024
workers = 2
aten_denied = ["aten::cumsum"]
[[vm]]
name = "train-a"
token = "secret-a"
[[vm]]
name = "small"
token = "secret-s"
memory_mib = 1
"""


class Host:
    """A running `malv serve`: .socket, .admin_socket, .work, .data_dir, .log()."""

    def __init__(self, malv, work, data_dirs, config=HOST_CONFIG):
        self.work = work
        self.socket = os.path.join(work, "malv.sock")
        self.admin_socket = os.path.join(work, "admin.sock")
        self.checkpoint_dir = os.path.join(work, "checkpoints")
        self.data_dir = os.path.join(work, "data")
        os.makedirs(self.data_dir)
        config_path = os.path.join(work, "malv.toml")
        with open(config_path, "w") as f:
            f.write(config)
        args = [malv, "serve", "--config", config_path, "--socket", self.socket, "--admin-socket",
                self.admin_socket, "--checkpoint-dir", self.checkpoint_dir,
                "--state-dir", os.path.join(work, "state"), "--data-dir", self.data_dir]
        for d in data_dirs:
            args += ["--data-dir", d]
        self._out = open(os.path.join(work, "serve.out"), "w")
        self._err = open(os.path.join(work, "serve.err"), "w")
        self.process = subprocess.Popen(args, stdout=self._out, stderr=self._err)
        deadline = time.monotonic() + 120  # a loaded 2-core machine starts slowly
        while True:
            with open(os.path.join(work, "serve.out")) as f:
                if any(line.startswith("ready ") for line in f):
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                log = self.log()
                self._out.close()
                self._err.close()
                raise RuntimeError(f"the host did not start (exit status "
                                   f"{self.process.returncode}):\n{log}")
            time.sleep(0.1)

    def log(self):
        with open(os.path.join(self.work, "serve.err")) as f:
            return f.read()[-4000:]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError("the host did not stop within 30 s of SIGTERM:\n" + self.log())
        self._out.close()
        self._err.close()


def fashion_mnist_dir():
    """Debian's dataset-fashion-mnist, where installed (scripts/install-deps.sh)."""
    path = "/usr/share/datasets/fashion-mnist"
    return path if os.path.isdir(path) else None


@contextlib.contextmanager
def running_host(config=HOST_CONFIG, data_dirs=()):
    """A `malv serve` of its own with `config`, in a private directory that
    is removed once it stopped."""
    malv = os.environ.get("MALV_BINARY")
    if not malv or not os.path.exists(malv):
        pytest.fail("MALV_BINARY must name the malv command (ctest sets it)")
    work = tempfile.mkdtemp(prefix="malv-python-test-")
    try:
        h = Host(malv, work, list(data_dirs), config)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        yield h
    finally:
        try:
            h.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def host():
    with running_host(data_dirs=["/usr/share/datasets"] if fashion_mnist_dir() else []) as h:
        yield h


@pytest.fixture
def conn(host):
    import malv
    c = malv.connect(socket=host.socket, vm="train-a", token="secret-a")
    yield c
    c.close()


@pytest.fixture
def raw_dataset(host):
    """A raw-f32 dataset in the host's data directory, small.f32 and small.labels:
    10 examples of 3 float32 features (each value unique) and uint8 labels in [0, 4)."""
    import numpy as np
    count, dims = 10, 3
    features = (np.arange(count * dims, dtype=np.float32) * 0.5 - 3.0).reshape(count, dims)
    labels = (np.arange(count) * 7 % 4).astype(np.uint8)
    features.tofile(os.path.join(host.data_dir, "small.f32"))
    labels.tofile(os.path.join(host.data_dir, "small.labels"))
    return features, labels


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MALV_SOCKET", "MALV_TCP", "MALV_VSOCK", "MALV_VM", "MALV_TOKEN",
                 "MALV_ADMIN_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
