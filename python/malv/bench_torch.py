"""`malv bench torch`: the malv torch device against torch on the CPU, in one run.

Started by `malv bench torch` (src/cli/bench_torch_command.cpp), which passes
--malv; runnable alone:

    PYTHONPATH=build/release/python /usr/bin/python3 -m malv.bench_torch \\
        --malv build/release/src/cli/malv [--json] [--steps 5]

It starts its own host (`malv serve --backend cpu`, open admission) and
measures, on the same machine:

  resnet18_step_over_native  a torchvision ResNet-18 training step (batch 32,
                             3x64x64, SGD with momentum) on the device over the
                             same step in plain torch on the CPU; both sides
                             with the thread count torch.get_num_threads() has
                             here (the host's libtorch uses its own default,
                             which on Debian's build is the same number)
  mlp_step_over_native       the Fashion-MNIST MLP (784-128-10, batch 64)
  async_ops_per_s            `add` of one-element tensors into an existing
                             output, queued and not read (then one synchronize)
  sync_op_roundtrip_us       `.item()` of a one-element tensor: one operator
                             sent and waited for

Each step figure is the median of --steps timed steps after two warm-up
steps; a device step ends with `.item()` of its loss, so it includes
waiting for the host.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import malv
import malv.torch


def start_host(malv_binary, work):
    sock = os.path.join(work, "malv.sock")
    out_path = os.path.join(work, "serve.out")
    out = open(out_path, "w")
    host = subprocess.Popen([malv_binary, "serve", "--open", "--backend", "cpu", "--socket", sock,
                             "--admin-socket", os.path.join(work, "admin.sock"), "--state-dir",
                             os.path.join(work, "state")],
                            stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        with open(out_path) as f:
            if any(line.startswith("ready ") for line in f):
                return host, sock
        if host.poll() is not None or time.monotonic() > deadline:
            host.kill()
            sys.exit("bench torch: the host did not start")
        time.sleep(0.1)


def step_seconds(model, inputs, labels, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        opt.step()
        loss.item()  # the device step has run
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(make_model, batch, shape, classes, dev, steps, progress):
    torch.manual_seed(0)
    model = make_model()
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    progress("native")
    native = step_seconds(model, x, y, steps)
    torch.manual_seed(0)
    on_device = make_model().to(dev)
    progress("device")
    device = step_seconds(on_device, x.to(dev), y.to(dev), steps)
    return device, native


def async_ops_per_s(dev, count):
    a = torch.ones(1).to(dev)
    b = torch.ones(1).to(dev)
    c = torch.empty(1).to(dev)
    for _ in range(100):  # warm: interned, meta kernels loaded
        torch.add(a, b, out=c)
    malv.torch.synchronize()
    start = time.perf_counter()
    for _ in range(count):
        torch.add(a, b, out=c)
    queued = time.perf_counter() - start
    malv.torch.synchronize()
    total = time.perf_counter() - start
    return count / total, count / queued


def sync_roundtrip_us(dev, count):
    a = torch.ones(1).to(dev)
    a.item()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        a.item()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--malv", required=True, help="the malv command (started as the host)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per side")
    parser.add_argument("--ops", type=int, default=20000, help="tiny asynchronous operators")
    args = parser.parse_args()

    def progress(what):
        print(f"bench torch: {what} ...", file=sys.stderr, flush=True)

    work = tempfile.mkdtemp(prefix="malv-bench-torch-")
    host, sock = start_host(args.malv, work)
    try:
        conn = malv.connect(socket=sock, vm="bench-torch")
        dev = malv.torch.device(conn)
        threads = torch.get_num_threads()
        progress(f"ResNet-18 step, batch 32, 3x64x64, {threads} threads")
        import torchvision
        resnet_dev, resnet_cpu = compare(lambda: torchvision.models.resnet18(num_classes=10), 32,
                                         (3, 64, 64), 10, dev, args.steps,
                                         lambda side: progress(f"  ResNet-18 {side}"))
        progress("MLP step (784-128-10, batch 64)")
        mlp = lambda: torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),  # noqa: E731
                                          torch.nn.Linear(128, 10))
        mlp_dev, mlp_cpu = compare(mlp, 64, (784,), 10, dev, max(args.steps, 20),
                                   lambda side: progress(f"  MLP {side}"))
        progress(f"{args.ops} tiny asynchronous operators")
        ops_per_s, queue_per_s = async_ops_per_s(dev, args.ops)
        progress("synchronous round trips")
        roundtrip = sync_roundtrip_us(dev, 1000)
        stats = malv.torch.stats()
        conn.close()
    finally:
        host.terminate()
        host.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    figures = {
        "resnet18_step_over_native": resnet_dev / resnet_cpu,
        "resnet18_step_device_s": resnet_dev,
        "resnet18_step_native_s": resnet_cpu,
        "mlp_step_over_native": mlp_dev / mlp_cpu,
        "mlp_step_device_ms": mlp_dev * 1e3,
        "mlp_step_native_ms": mlp_cpu * 1e3,
        "async_ops_per_s": ops_per_s,
        "async_ops_queued_per_s": queue_per_s,
        "sync_op_roundtrip_us": roundtrip,
        "threads": threads,
        "operators_in_guest": stats["operators_in_guest"],
    }
    if args.json:
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v)
                          for k, v in figures.items()}))
    else:
        print("malv bench torch (the malv torch device against torch on the CPU)")
        for key, value in figures.items():
            print(f"  {key:28} {value:.4g}" if isinstance(value, float) else f"  {key:28} {value}")


if __name__ == "__main__":
    main()
