"""PyTorch's own operator database against the malv torch device.

Every operator of torch's OpInfo database (``op_db``) that supports float32 on
the CPU runs its float32 sample inputs on the ``malv`` device and on the CPU;
an operator matches when every sample's outputs agree (same shapes and
dtypes, values within torch.testing's float32 tolerances). Operators whose
output is uninitialised memory (``empty``, ``empty_like``, ...) are left out.
A failing operator is listed with its reason; an exception in one operator is
that operator's failure, not the end of the run. Tensors a sample function
puts on the CPU whatever the device (index tensors) stay on the CPU, as in
PyTorch's own device tests.

    PYTHONPATH=build/release/python /usr/bin/python3 -m malv.opinfo_conformance \\
        --socket /run/malv/malv.sock --vm vm-a --token t [--json] [--limit N]

Prints ``opinfo_match_fraction`` (matched / compared).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import types

import torch

import malv
import malv.torch

# Outputs are uninitialised memory: nothing to compare.
UNINITIALISED = {"empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided",
                 "torch.empty", "torch.empty_like"}


def load_op_db():
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:  # Debian lacks it; op_db only needs these two names
            stub = types.ModuleType("expecttest")
            stub.TestCase = object
            stub.ACCEPT = False
            sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db
    return op_db


def to_device(value, dev, on_cpu=None):
    """value with its tensors moved to dev, except those on_cpu (an iterator
    of bools, one per tensor in this walk's order) says stay on the CPU."""
    if isinstance(value, torch.Tensor):
        return value if on_cpu is not None and next(on_cpu) else value.to(dev)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, dev, on_cpu) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, dev, on_cpu) for k, v in value.items()}
    return value


def devices_of(value):
    """The device type of each tensor in value, in to_device's order."""
    if isinstance(value, torch.Tensor):
        return [value.device.type]
    if isinstance(value, (list, tuple)):
        return [d for v in value for d in devices_of(v)]
    if isinstance(value, dict):
        return [d for v in value.values() for d in devices_of(v)]
    return []


def cpu_placement(op, samples):
    """Which tensors of each sample the sample function puts on the CPU
    whatever the device (index tensors, tensor_split's indices): PyTorch's
    own device tests keep them there, and so does this run. Learnt from the
    same samples made for the meta device (no data is made for them);
    None when those cannot be made or do not line up: every tensor moves."""
    try:
        metas = list(op.sample_inputs("meta", torch.float32, requires_grad=False))
    except Exception:
        return None
    if len(metas) != len(samples):
        return None
    placement = []
    for sample, meta in zip(samples, metas):
        want = devices_of([[sample.input] + list(sample.args), sample.kwargs])
        got = devices_of([[meta.input] + list(meta.args), meta.kwargs])
        if len(want) != len(got):
            return None
        placement.append([d == "cpu" for d in got])
    return placement


def to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def compare(got, want):
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"returned {type(got).__name__}, the CPU a tensor"
        torch.testing.assert_close(got, want, equal_nan=True, check_device=False)
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return "returned a sequence of another length"
        for g, w in zip(got, want):
            why = compare(g, w)
            if why:
                return why
        return None
    if got != want and not (want != want and got != got):  # NaN == NaN
        return f"returned {got!r}, the CPU {want!r}"
    return None


def check(op, dev):
    """None when every float32 sample matches, else why not."""
    samples = list(op.sample_inputs("cpu", torch.float32, requires_grad=False))
    if not samples:
        return "no samples", False
    placement = cpu_placement(op, samples)
    compared = False
    for index, sample in enumerate(samples):
        args = [sample.input] + list(sample.args)
        torch.manual_seed(0)
        try:
            want = op(*args, **sample.kwargs)
        except Exception:  # the CPU itself does not run this sample (jiterator: CUDA only)
            continue
        compared = True
        on_cpu = iter(placement[index]) if placement else None
        dargs = to_device(args, dev, on_cpu)
        dkwargs = to_device(sample.kwargs, dev, on_cpu)
        torch.manual_seed(0)
        got = to_cpu(op(*dargs, **dkwargs))
        why = compare(got, want)
        if why:
            return why, True
    return (None, True) if compared else ("the CPU runs none of its samples", False)


def run_worker(args, ops, first):
    """Checks ops[first:], one JSON line per operator on stdout."""
    conn = malv.connect(socket=args.socket, vm=args.vm, token=args.token)
    dev = malv.torch.device(conn)
    for op in ops[first:]:
        try:
            why, compared = check(op, dev)
        except Exception as e:  # one operator's failure, not the run's
            first_line = (str(e).splitlines() or [""])[0]
            why, compared = f"{type(e).__name__}: {first_line[:200]}", True
        print(json.dumps({"why": why, "compared": compared}), flush=True)


def op_name(op):
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket")
    parser.add_argument("--vm")
    parser.add_argument("--token")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N operators")
    parser.add_argument("--only", action="append", default=[],
                        help="only this operator (repeatable)")
    parser.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ops = [op for op in load_op_db() if torch.float32 in op.supported_dtypes("cpu")
           and op.name not in UNINITIALISED]
    if args.only:
        ops = [op for op in ops if op.name in args.only]
    if args.limit:
        ops = ops[:args.limit]
    if args.worker >= 0:
        run_worker(args, ops, args.worker)
        return
    # The reference runs with the BLAS kernels the host runs (malv picks
    # them by the CPU's features: OPENBLAS_CORETYPE, from the device's name,
    # "OpenBLAS (SkylakeX) on 2 workers"), or matmul-based operators differ
    # in the last bits for a reason that is not the device's.
    env = dict(os.environ)
    if "OPENBLAS_CORETYPE" not in env:
        probe = malv.connect(socket=args.socket, vm=args.vm, token=args.token)
        name = probe.device_info()["name"]
        probe.close()
        if name.startswith("OpenBLAS (") and ")" in name:
            env["OPENBLAS_CORETYPE"] = name[len("OpenBLAS ("):name.index(")")]
    # The operators run in a worker process: one that crashes the guest
    # (a segmentation fault in a kernel or in the device) is that
    # operator's failure, and a new worker goes on with the next.
    matched, failures, skipped = 0, {}, 0
    start = time.monotonic()
    index = 0
    while index < len(ops):
        cmd = [sys.executable, "-W", "ignore", "-m", "malv.opinfo_conformance",
               "--worker", str(index)]
        for flag in ("socket", "vm", "token"):
            if getattr(args, flag):
                cmd += [f"--{flag}", getattr(args, flag)]
        for name in args.only:
            cmd += ["--only", name]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=env)
        for line in worker.stdout:
            result = json.loads(line)
            name = op_name(ops[index])
            if not result["compared"]:
                skipped += 1
            elif result["why"] is None:
                matched += 1
            else:
                failures[name] = result["why"]
            index += 1
            if index % 50 == 0:
                print(f"opinfo: {index}/{len(ops)} operators, {matched} match",
                      file=sys.stderr, flush=True)
        status = worker.wait()
        if index < len(ops) and status != 0:
            failures[op_name(ops[index])] = f"crashed the guest process (status {status})"
            index += 1
    compared = len(ops) - skipped
    result = {"opinfo_match_fraction": matched / compared if compared else 0.0,
              "opinfo_operators": len(ops), "opinfo_compared": compared,
              "opinfo_matched": matched, "opinfo_seconds": round(time.monotonic() - start, 1),
              "failures": failures}
    if args.json:
        print(json.dumps(result))
    else:
        for name, why in sorted(failures.items()):
            print(f"  {name}: {why}")
        print(f"opinfo_match_fraction {result['opinfo_match_fraction']:.3f} "
              f"({matched} of {compared} operators; {skipped} without float32 samples)")


if __name__ == "__main__":
    main()
