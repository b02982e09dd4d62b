#!/usr/bin/env python3
"""An epoch of Fashion-MNIST from the host's data pipeline (malv.data.HostDataset)
against torch's DataLoader reading the same files, num_workers 0 and 2, in one
run. Prints one JSON object (keys hostdataset_epoch_s, best_loader_epoch_s, and
each setting's figure); the torch benchmark of issue 21 (`malv bench torch`)
will report the same two keys.

    PYTHONPATH=build/release/python /usr/bin/python3 python/tools/bench_hostdataset.py \
        --malv build/release/src/cli/malv [--epochs 3] [--batch 128]

Both sides make the same batches' worth of work: every example of the
training set once per epoch in a seeded shuffled order, normalised as
(byte / 255 - 0.2860) / 0.3530 into float32 [batch, 784] with int64 labels,
delivered as CPU tensors to the loop. The DataLoader's dataset decodes the gzip
IDX files once, when it is made (as torchvision's FashionMNIST does), and
builds each example in __getitem__; HostDataset's host decodes them once when
the dataset is opened. Each figure is the median epoch of --epochs, the first
epoch included (a DataLoader starts its workers every epoch; the host stages
the first batches when the iteration starts). The host runs here, on the same
machine, as `malv serve --backend cpu`.
"""

import argparse
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import malv

MEAN, STD = 0.2860, 0.3530
ROOT = "/usr/share/datasets"


class FashionMnist(torch.utils.data.Dataset):
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


def epoch_times(make_iter, epochs):
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        n = 0
        for x, y in make_iter():
            n += len(y)
        times.append(time.perf_counter() - start)
        assert n == 60000, n
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--malv", required=True, help="the malv command (started as the host)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(ROOT, "fashion-mnist")):
        sys.exit("bench_hostdataset: dataset-fashion-mnist is not installed")

    work = tempfile.mkdtemp(prefix="malv-bench-hostdataset-")
    sock = os.path.join(work, "malv.sock")
    out = open(os.path.join(work, "serve.out"), "w")
    host = subprocess.Popen([args.malv, "serve", "--open", "--backend", "cpu", "--socket", sock,
                             "--admin-socket", os.path.join(work, "admin.sock"), "--state-dir",
                             os.path.join(work, "state"), "--data-dir", ROOT],
                            stdout=out, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("ready ") for line in open(out.name)):
            if host.poll() is not None or time.monotonic() > deadline:
                sys.exit("bench_hostdataset: the host did not start")
            time.sleep(0.1)
        conn = malv.connect(socket=sock, vm="bench")
        ds = malv.data.HostDataset("fashion-mnist", batch_size=args.batch, seed=1,
                                   output="torch", mean=MEAN, std=STD, conn=conn)
        host_times = epoch_times(lambda: iter(ds), args.epochs)
        ds.close()
        conn.close()
        result = {"epochs": args.epochs, "batch": args.batch,
                  "hostdataset_epoch_s": round(statistics.median(host_times), 4)}
        loaders = {}
        dataset = FashionMnist(os.path.join(ROOT, "fashion-mnist"))
        for workers in (0, 2):
            generator = torch.Generator().manual_seed(1)
            loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                                 num_workers=workers, generator=generator)
            loaders[workers] = statistics.median(epoch_times(lambda: iter(loader), args.epochs))
            result[f"loader_workers{workers}_epoch_s"] = round(loaders[workers], 4)
        result["best_loader_epoch_s"] = round(min(loaders.values()), 4)
        result["hostdataset_over_best_loader"] = round(
            result["hostdataset_epoch_s"] / result["best_loader_epoch_s"], 3)
        result["torch_threads"] = torch.get_num_threads()
        print(json.dumps(result))
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=30)
        out.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
