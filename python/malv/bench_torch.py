"""`malv bench torch`: the malv torch device against torch on the CPU, in one run.

Started by `malv bench torch` (src/cli/bench_torch_command.cpp), which passes
--malv; runnable alone:

    PYTHONPATH=build/release/python /usr/bin/python3 -m malv.bench_torch \\
        --malv build/release/src/cli/malv [--json] [--steps 5]

It starts its own host (`malv serve --backend cpu`, open admission; with
--host-cpus auto, the default, its threads on the last core when there are
two or more: key host_cpus) and measures, on the same machine:

  resnet18_step_over_native  a torchvision ResNet-18 training step (batch 32,
                             3x64x64, SGD with momentum) on the device over the
                             same step in plain torch on the CPU; both sides
                             with the thread count torch.get_num_threads() has
                             here (the host's libtorch uses its own default,
                             which on Debian's build is the same number)
  mlp_step_over_native       the Fashion-MNIST MLP (784-128-10, batch 64)
  mlp_loop_step_over_native  the MLP's step in a training loop that waits only
                             at its end (20 steps, then .item())
  async_ops_per_s            `add` of one-element tensors into an existing
                             output, queued and not read (then one synchronize):
                             the median of 5 rounds of --ops operators
                             (async_ops_queued_per_s: the rate they were
                             queued at; async_native_ops_per_s: the same loop
                             in plain torch on the CPU)
  sync_op_roundtrip_us       `.item()` of a one-element tensor: one operator
                             sent and waited for
  hostdataset_epoch_s        an epoch of Fashion-MNIST (60,000 examples, batch
                             128, shuffled, normalised float32 [128, 784] and
                             int64 labels) from malv.data.HostDataset, as
                             tensors on the device (the host copies each batch
                             into them; the epoch ends when the last copy has
                             run)
  best_loader_epoch_s        the same epoch from torch's DataLoader reading the
                             same gzip IDX files (decoded once when the dataset
                             is made, as torchvision's FashionMNIST does), the
                             faster of num_workers 0 and 2, as CPU tensors
  opinfo_match_fraction      malv.opinfo_conformance over PyTorch's op_db
                             (--opinfo-ops N: only the first N operators)

Each step figure is the median of --steps timed steps after two warm-up
steps, the device and the native step taking turns; a device step ends
with `.item()` of its loss, so it includes waiting for the host.
"""

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import malv
import malv.torch

DATASETS = "/usr/share/datasets"  # Debian's dataset-fashion-mnist (scripts/install-deps.sh)
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's training set


def host_cores(choice):
    """The --host-cpus the host is started with (None: every core):
    "auto" gives it the last of this process's cores when there are two or
    more, so that the host's threads (its workers, the session's
    dispatcher) and the program's keep off each other's cores, as a cloud
    host keeps its own threads off the VMs' vCPUs."""
    if choice == "all":
        return None
    if choice == "auto":
        cores = sorted(os.sched_getaffinity(0))
        return str(cores[-1]) if len(cores) >= 2 else None
    return choice


def start_host(malv_binary, work, host_cpus):
    sock = os.path.join(work, "malv.sock")
    out_path = os.path.join(work, "serve.out")
    out = open(out_path, "w")
    cmd = [malv_binary, "serve", "--open", "--backend", "cpu", "--socket", sock, "--admin-socket",
           os.path.join(work, "admin.sock"), "--state-dir", os.path.join(work, "state"),
           "--data-dir", DATASETS]
    if host_cpus is not None:
        cmd += ["--host-cpus", host_cpus]
    host = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        with open(out_path) as f:
            if any(line.startswith("ready ") for line in f):
                return host, sock
        if host.poll() is not None or time.monotonic() > deadline:
            host.kill()
            sys.exit("bench torch: the host did not start")
        time.sleep(0.1)


def training_step(model, opt, inputs, labels, wait=True):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(inputs), labels)
    loss.backward()
    opt.step()
    if wait:
        loss.item()  # the device step has run
    return loss


def compare(make_model, batch, shape, classes, dev, steps, progress, loop=0):
    """Median seconds of a training step on the device and natively, each
    step waiting for its loss. The two sides take turns step by step (after
    two warm-up steps each), so that both see the machine as it is at the
    time: on a shared 2-vCPU machine the same step's time moves by half from
    one second to the next. With `loop`, also the time per step of a
    training loop that waits only at its end (`loop` steps back to back,
    then `.item()` of the last loss; the device queues each step while the
    host runs the one before), the sides taking turns loop by loop."""
    torch.manual_seed(0)
    native_model = make_model()
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    torch.manual_seed(0)
    device_model = make_model().to(dev)
    xd, yd = x.to(dev), y.to(dev)
    sides = [(native_model, torch.optim.SGD(native_model.parameters(), lr=0.01, momentum=0.9),
              x, y, []),
             (device_model, torch.optim.SGD(device_model.parameters(), lr=0.01, momentum=0.9),
              xd, yd, [])]
    progress(f"native and device, {steps} steps each, taking turns")
    for i in range(steps + 2):
        for model, opt, inputs, labels, times in sides:
            start = time.perf_counter()
            training_step(model, opt, inputs, labels)
            if i >= 2:
                times.append(time.perf_counter() - start)
    figures = {"device": statistics.median(sides[1][4]), "native": statistics.median(sides[0][4])}
    if loop > 0:
        progress(f"native and device, {steps} loops of {loop} steps each, taking turns")
        looped = ([], [])
        for _ in range(steps):
            for side, (model, opt, inputs, labels, _) in enumerate(sides):
                start = time.perf_counter()
                for _ in range(loop):
                    loss = training_step(model, opt, inputs, labels, wait=False)
                loss.item()  # the loop's steps have run
                looped[side].append((time.perf_counter() - start) / loop)
        figures["device_loop"] = statistics.median(looped[1])
        figures["native_loop"] = statistics.median(looped[0])
    return figures


def async_ops_per_s(dev, count, rounds=5):
    """Tiny operators per second, queued and run (the median of `rounds`
    rounds of `count`), the rate at which they were queued, and the same
    loop in plain torch on the CPU."""
    a = torch.ones(1).to(dev)
    b = torch.ones(1).to(dev)
    c = torch.empty(1).to(dev)
    for _ in range(100):  # warm: interned, meta kernels loaded
        torch.add(a, b, out=c)
    malv.torch.synchronize()
    done, queued = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            torch.add(a, b, out=c)
        queued.append(count / (time.perf_counter() - start))
        malv.torch.synchronize()
        done.append(count / (time.perf_counter() - start))
    ca, cb, cc = torch.ones(1), torch.ones(1), torch.empty(1)
    start = time.perf_counter()
    for _ in range(count):
        torch.add(ca, cb, out=cc)
    native = count / (time.perf_counter() - start)
    return statistics.median(done), statistics.median(queued), native


def sync_roundtrip_us(dev, count):
    a = torch.ones(1).to(dev)
    a.item()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        a.item()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


class FashionMnist(torch.utils.data.Dataset):
    """The training set as torchvision's FashionMNIST reads it: the gzip IDX
    files decoded once, each example normalised in __getitem__."""

    def __init__(self, directory):
        def load(name, offset):
            with gzip.open(os.path.join(directory, name), "rb") as f:
                return np.frombuffer(f.read(), np.uint8, offset=offset)
        self.x = load("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)
        self.y = load("train-labels-idx1-ubyte.gz", 8)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        x = (self.x[i].astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
        return torch.from_numpy(x), int(self.y[i])


def epoch_seconds(make_iter, epochs, finish=lambda: None):
    """Median over `epochs` of one epoch's time (the first included: a
    DataLoader starts its workers each epoch, the host stages its first
    batches when iteration starts)."""
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        rows = 0
        for _, y in make_iter():
            rows += len(y)
        finish()
        times.append(time.perf_counter() - start)
        if rows != 60000:
            sys.exit(f"bench torch: an epoch of {rows} examples, 60000 expected")
    return statistics.median(times)


def data_epochs(conn, epochs, batch=128):
    """(hostdataset_epoch_s, {workers: loader epoch s})."""
    ds = malv.data.HostDataset("fashion-mnist", batch_size=batch, seed=1, output="device",
                               mean=MEAN, std=STD, conn=conn)
    ours = epoch_seconds(lambda: iter(ds), epochs, malv.torch.synchronize)
    ds.close()
    loaders = {}
    dataset = FashionMnist(os.path.join(DATASETS, "fashion-mnist"))
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                             num_workers=workers,
                                             generator=torch.Generator().manual_seed(1))
        loaders[workers] = epoch_seconds(lambda: iter(loader), epochs)
    return ours, loaders


def opinfo(sock, limit):
    """malv.opinfo_conformance's figures, run against this host."""
    cmd = [sys.executable, "-m", "malv.opinfo_conformance", "--socket", sock, "--vm",
           "bench-opinfo", "--json"]
    if limit:
        cmd += ["--limit", str(limit)]
    run = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if run.returncode != 0:
        sys.exit(f"bench torch: the OpInfo conformance run failed (status {run.returncode})")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return {k: result[k] for k in ("opinfo_match_fraction", "opinfo_compared", "opinfo_matched")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--malv", required=True, help="the malv command (started as the host)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per side")
    parser.add_argument("--ops", type=int, default=20000, help="tiny asynchronous operators")
    parser.add_argument("--epochs", type=int, default=3,
                        help="data-pipeline epochs per side (0: leave the data figures out)")
    parser.add_argument("--opinfo-ops", type=int, default=0,
                        help="OpInfo operators to run (0: all of them; -1: leave it out)")
    parser.add_argument("--host-cpus", default="auto",
                        help="the host's own cores (malv serve --host-cpus): auto (the last "
                             "core when there are two or more), all, or a CPU list")
    args = parser.parse_args()

    def progress(what):
        print(f"bench torch: {what} ...", file=sys.stderr, flush=True)

    work = tempfile.mkdtemp(prefix="malv-bench-torch-")
    host_cpus = host_cores(args.host_cpus)
    host, sock = start_host(args.malv, work, host_cpus)
    try:
        conn = malv.connect(socket=sock, vm="bench-torch")
        dev = malv.torch.device(conn)
        threads = torch.get_num_threads()
        progress(f"ResNet-18 step, batch 32, 3x64x64, {threads} threads")
        import torchvision
        resnet = compare(lambda: torchvision.models.resnet18(num_classes=10), 32, (3, 64, 64), 10,
                         dev, args.steps, lambda side: progress(f"  ResNet-18 {side}"))
        progress("MLP step (784-128-10, batch 64)")
        mlp = lambda: torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),  # noqa: E731
                                          torch.nn.Linear(128, 10))
        mlp_steps = compare(mlp, 64, (784,), 10, dev, max(args.steps, 20),
                            lambda side: progress(f"  MLP {side}"), loop=20)
        progress(f"{args.ops} tiny asynchronous operators")
        ops_per_s, queue_per_s, native_ops_per_s = async_ops_per_s(dev, args.ops)
        progress("synchronous round trips")
        roundtrip = sync_roundtrip_us(dev, 1000)
        data = None
        if args.epochs > 0 and os.path.isdir(os.path.join(DATASETS, "fashion-mnist")):
            progress(f"Fashion-MNIST epochs: HostDataset, DataLoader with 0 and 2 workers "
                     f"({args.epochs} each)")
            data = data_epochs(conn, args.epochs)
        elif args.epochs > 0:
            progress(f"no Fashion-MNIST at {DATASETS}/fashion-mnist: no data figures")
        stats = malv.torch.stats()
        conn.close()
        conformance = None
        if args.opinfo_ops >= 0:
            progress("OpInfo conformance" + (f" (first {args.opinfo_ops} operators)"
                                             if args.opinfo_ops else ""))
            conformance = opinfo(sock, args.opinfo_ops)
    finally:
        host.terminate()
        host.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    figures = {
        "resnet18_step_over_native": resnet["device"] / resnet["native"],
        "resnet18_step_device_s": resnet["device"],
        "resnet18_step_native_s": resnet["native"],
        "mlp_step_over_native": mlp_steps["device"] / mlp_steps["native"],
        "mlp_step_device_ms": mlp_steps["device"] * 1e3,
        "mlp_step_native_ms": mlp_steps["native"] * 1e3,
        "mlp_loop_step_over_native": mlp_steps["device_loop"] / mlp_steps["native_loop"],
        "mlp_loop_step_device_ms": mlp_steps["device_loop"] * 1e3,
        "mlp_loop_step_native_ms": mlp_steps["native_loop"] * 1e3,
        "async_ops_per_s": ops_per_s,
        "async_ops_queued_per_s": queue_per_s,
        "async_native_ops_per_s": native_ops_per_s,
        "sync_op_roundtrip_us": roundtrip,
        "threads": threads,
        "host_cpus": host_cpus if host_cpus is not None else "all",
        "operators_in_guest": stats["operators_in_guest"],
    }
    if data is not None:
        ours, loaders = data
        figures["hostdataset_epoch_s"] = ours
        figures["best_loader_epoch_s"] = min(loaders.values())
        figures["hostdataset_over_best_loader"] = ours / min(loaders.values())
        for workers, seconds in loaders.items():
            figures[f"loader_workers{workers}_epoch_s"] = seconds
    if conformance is not None:
        figures.update(conformance)
    if args.json:
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v)
                          for k, v in figures.items()}))
    else:
        print("malv bench torch (the malv torch device against torch on the CPU)")
        for key, value in figures.items():
            print(f"  {key:28} {value:.4g}" if isinstance(value, float) else f"  {key:28} {value}")


if __name__ == "__main__":
    main()
