"""malv.torch guests as separate processes: what the host accounts when one dies,
and how it shares the device between guests of VMs of different weights.

Each guest is a python3 subprocess running the torch device against a host of
this file's own (`guests_host`, GUESTS_CONFIG); the host's accounting is read
through the admin API (malv.admin.Client) and its metrics.
"""

import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

torch = pytest.importorskip("torch")
import malv  # noqa: E402
import malv.admin  # noqa: E402
import malv.torch  # noqa: E402

import conftest  # noqa: E402  (pytest puts this directory on sys.path for it)

# The vGPU scheduler has two device slots (SchedulerOptions::device_slots,
# whatever [host] workers says), a stream holds at most one, and a Python
# guest has one stream: two guests would each hold a slot and their weights
# could not act (docs/operations.md, "Weights"). Three guests want three
# slots of two, so the host level's fair-share decides their shares by
# weight (2:1:1: a half, a quarter and a quarter of the device time). Two
# workers, one a slot: with one, both slots' batches would sit on it and the
# one waiting in its queue be charged busy time too.
GUESTS_CONFIG = """
[host]
backend = "cpu"
memory_mib = 1024
workers = 2
gpu_host_policy = "fair-share"
[[vm]]
name = "victim"
token = "secret-v"
memory_mib = 256
[[vm]]
name = "heavy"
token = "secret-h"
memory_mib = 64
weight = 2.0
priority = "batch"
[[vm]]
name = "light"
token = "secret-l"
memory_mib = 64
weight = 1.0
priority = "batch"
[[vm]]
name = "other"
token = "secret-o"
memory_mib = 64
weight = 1.0
priority = "batch"
"""

TOKENS = {"victim": "secret-v", "heavy": "secret-h", "light": "secret-l", "other": "secret-o"}


@pytest.fixture(scope="module")
def guests_host():
    with conftest.running_host(GUESTS_CONFIG) as h:
        yield h


@pytest.fixture
def admin(guests_host):
    return malv.admin.Client(guests_host.admin_socket)


class Guest:
    """A python3 process running `script` as VM `vm` of the host; it prints
    lines the test waits for and reads `go` from its stdin."""

    def __init__(self, host, vm, script, *args):
        self.vm = vm
        self._err = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, host.socket, vm, TOKENS[vm], *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)  # its end

    def expect(self, word, timeout=120):
        """Waits for a line starting with `word` (importing torch takes seconds)."""
        deadline = time.monotonic() + timeout
        line = ""
        while line is not None and not line.startswith(word):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
        if line is not None and line.startswith(word):
            return line.split()[1:]
        self.kill()
        self._err.seek(0)
        pytest.fail(f"guest {self.vm} did not print {word!r} within {timeout} s (exit status "
                    f"{self.process.returncode}):\n{self._err.read()[-3000:]}")

    def go(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        return self.process.returncode


def poll(what, read, done, timeout=30.0):
    """Reads until done(value); fails naming `what` and the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(0.1)


TRAINING_GUEST = r"""
import sys
import malv, malv.torch, torch
socket, vm, token = sys.argv[1:4]
dev = malv.torch.device(malv.connect(socket=socket, vm=vm, token=token))
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 10)).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(256, 512).to(dev)
y = torch.randint(0, 10, (256,)).to(dev)
step = 0
while True:
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    step += 1
    if step == 2:
        malv.torch.synchronize()
        print("training", malv.torch.stats()["bytes"], flush=True)
    # From here on nothing waits: the steps stay queued on the host when it dies.
"""


def test_a_guest_killed_mid_step_leaves_no_bytes_accounted_to_its_vm(guests_host, admin):
    assert admin.stats("victim").memory_used == 0
    guest = Guest(guests_host, "victim", TRAINING_GUEST)
    guest.expect("training")
    # While it trains the host accounts its buffers (the model, momentum, the
    # batch: about 2 MiB) to its VM.
    held = admin.stats("victim")
    assert held.sessions == 1
    assert held.memory_used >= 2 << 20, held
    # Killed mid-step: with steps of its queued on the host.
    poll("steps queued on the host", lambda: admin.stats("victim"), lambda s: s.queue_depth > 0)
    assert guest.kill() == -signal.SIGKILL

    # The host notices the session's end (its socket closes), drops the
    # queued steps and frees every buffer the guest held.
    poll("the dead guest's session and bytes released", lambda: admin.stats("victim"),
         lambda s: s.sessions == 0 and s.memory_used == 0 and s.virtual_memory_used == 0)
    assert admin.stats("victim").host_memory_used == 0
    assert admin.metrics().value("malv_vm_memory_bytes", vm="victim") == 0
    # The VM is usable again, from nothing.
    with malv.connect(socket=guests_host.socket, vm="victim", token=TOKENS["victim"]) as c:
        c.ping()


MATMUL_GUEST = r"""
import sys
import malv, malv.torch, torch
socket, vm, token, n = sys.argv[1:5]
n = int(n)
dev = malv.torch.device(malv.connect(socket=socket, vm=vm, token=token))
a = torch.randn(n, n).to(dev)
b = torch.randn(n, n).to(dev)
(a @ b).sum().item()  # the operators interned, the buffers cached
print("ready", flush=True)
sys.stdin.readline()
while True:  # until killed: the test reads the host's accounting meanwhile
    # 256 queued, then a wait: always work on the host, but a bounded
    # amount. (Queued without end, the host's dispatchers validate and hold
    # every operator as it comes, at nice 0: their CPU and memory, about
    # 100 MB/s, grow until the session's arena is full, and the workers
    # measured here starve.)
    for _ in range(256):
        c = torch.mm(a, b)
    malv.torch.synchronize()
"""


# Before the scheduler could weigh PyTorch work (2026-12-07, five runs) this
# came out about 1:1:1: a kAtenBatch was one accel::HostCall of up to 256
# operators with no cost estimate, so a scheduler batch took every command a
# stream had queued (~150 ms of matmuls), far past the 5 ms starvation
# bound, and the VM that waited was always served next (round robin). Now
# each operator carries its recent run time on this host
# (AtenTask::estimated_ns), the host cuts a batch into chunks of about
# 0.5 ms, and the scheduler weighs a HostCall by that time
# (VgpuScheduler::observe): 3 of 3 runs passed.
def test_guests_share_the_device_by_their_vms_weights(guests_host, admin):
    vms = ("heavy", "light", "other")
    guests = [Guest(guests_host, vm, MATMUL_GUEST, 256) for vm in vms]
    try:
        for g in guests:
            g.expect("ready")
        for g in guests:
            g.go()
        time.sleep(1.0)  # every queue full
        before, metrics_before = admin.stats(), admin.metrics()
        start = time.monotonic()
        # At least 4 s and 24 scheduling decisions (a batch's busy time is
        # charged when it ends, so a few batches would be lumpy; a machine
        # whose cores are busy with other work runs the host's workers, at
        # nice 10, slowly), 90 s at most.
        while True:
            time.sleep(0.2)
            metrics_after = admin.metrics()
            decisions = (metrics_after.value("malv_scheduler_decisions_total") -
                         metrics_before.value("malv_scheduler_decisions_total"))
            window = time.monotonic() - start
            if (window >= 4.0 and decisions >= 24) or window >= 90.0:
                break
        after = admin.stats()
        for g in guests:
            if g.process.poll() is not None:
                pytest.fail(f"guest {g.vm} ended early (exit status {g.process.returncode})")
    finally:
        for g in guests:
            g.kill()
    busy = {vm: after[vm].busy_seconds - before[vm].busy_seconds for vm in vms}
    commands = {vm: after[vm].commands - before[vm].commands for vm in vms}
    scheduler = {name: metrics_after.value(f"malv_scheduler_{name}_total") -
                 metrics_before.value(f"malv_scheduler_{name}_total")
                 for name in ("decisions", "starvation_overrides")}
    facts = (f"busy seconds {busy}, commands {commands}, scheduler {scheduler}, "
             f"window {window:.2f} s")
    # Both slots were busy nearly all the time: the guests contended (each
    # always has work queued or is queueing more), so what each got is the
    # scheduler's choice, not its own demand. (pytest.fail: not the failure
    # the xfail above expects.)
    if scheduler["decisions"] < 24 or sum(busy.values()) < 1.6 * window or min(busy.values()) <= 0:
        pytest.fail(f"the guests did not contend for the device long enough: {facts}")
    # Weights 2:1:1: the heavy VM gets about twice the time of each other one
    # (equal weights would give 1:1:1), and the two light ones about the same.
    ratio = busy["heavy"] / busy["light"]
    assert 1.5 <= ratio <= 3.0, f"heavy/light {ratio:.2f}: {facts}"
    assert 0.6 <= busy["light"] / busy["other"] <= 1.6, facts
