#!/usr/bin/env python3
"""Trains a Fashion-MNIST MLP in PyTorch on batches from the host's data
pipeline (malv.data.HostDataset), checkpointing through the host
(malv.checkpoint) and resuming from it.

    PYTHONPATH=build/release/python /usr/bin/python3 examples/python/fashion_mnist_mlp.py \
        --socket /run/malv/malv.sock --vm train-a --token secret-a \
        --steps 200 --checkpoint mlp-run --checkpoint-every 100
    # later, or after a crash: the same command with --resume continues at the saved step

The model runs on torch's CPU here; with the malv torch device (docs/torch.md)
it will run on the host's accelerator. The connection arguments default to
MALV_SOCKET / MALV_TCP, MALV_VM and MALV_TOKEN (docs/python.md).
"""

import argparse
import json
import sys

import numpy as np
import torch

import malv


def build_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 10))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket")
    parser.add_argument("--tcp")
    parser.add_argument("--vm")
    parser.add_argument("--token")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="path under the host's data directories")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="train until this step")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--checkpoint", help="checkpoint name on the host")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    args = parser.parse_args()
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint")

    try:
        conn = malv.connect(socket=args.socket, tcp=args.tcp, vm=args.vm, token=args.token)
        model = build_model(args.seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        step = 0
        if args.resume:
            state = malv.checkpoint.load(args.checkpoint, conn=conn)
            step = int(state.pop("step").item())
            model.load_state_dict(state)
        data = malv.data.HostDataset(args.dataset, batch_size=args.batch, seed=args.seed,
                                     output="torch", first_batch=step, mean=0.2860, std=0.3530,
                                     conn=conn)
        loss_fn = torch.nn.CrossEntropyLoss()
        while step < args.steps:
            x, y = data.next_batch()
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 50 == 0 or step == args.steps:
                print(json.dumps({"step": step, "loss": round(loss.item(), 6)}), flush=True)
            if args.checkpoint and (step % args.checkpoint_every == 0 or step == args.steps):
                state = dict(model.state_dict(), step=torch.tensor(step))
                malv.checkpoint.save(args.checkpoint, state, conn=conn)
        digest = float(sum(np.abs(p.detach().numpy()).sum() for p in model.parameters()))
        print(json.dumps({"done": step, "parameter_abs_sum": digest}), flush=True)
    except malv.Error as e:
        print(f"fashion_mnist_mlp: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
