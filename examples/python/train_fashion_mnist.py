#!/usr/bin/env python3
"""Trains a PyTorch model on Fashion-MNIST on the malv torch device: batches
from the host's data pipeline (malv.data.HostDataset) land on the device,
checkpoints of the device tensors are written by the host (malv.checkpoint),
and a run resumes from them.

    PYTHONPATH=build/release/python /usr/bin/python3 examples/python/train_fashion_mnist.py \\
        --socket /run/malv/malv.sock --vm train-a --token secret-a \\
        --model mlp --steps 200 --checkpoint mlp-run --checkpoint-every 100
    # later, or after a crash: the same command with --resume continues at the saved step

--model resnet18 trains torchvision's ResNet-18 (random initialisation:
nothing is downloaded) with a one-channel first convolution on the 28x28
images. --device cpu runs the same program on torch's CPU (batches and
checkpoints still go through the host) for comparison. The connection
arguments default to MALV_SOCKET / MALV_TCP, MALV_VM and MALV_TOKEN
(docs/python.md). Prints a JSON line every --log-every steps and at the end.
"""

import argparse
import json
import sys

import torch

import malv
import malv.torch

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's training set


def build_model(name, seed):
    torch.manual_seed(seed)
    if name == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                   torch.nn.Linear(128, 10))
    import torchvision
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket")
    parser.add_argument("--tcp")
    parser.add_argument("--vm")
    parser.add_argument("--token")
    parser.add_argument("--model", choices=("mlp", "resnet18"), default="mlp")
    parser.add_argument("--device", choices=("malv", "cpu"), default="malv",
                        help="where the model runs (default: the malv torch device)")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="path under the host's data directories")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="train until this step")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--checkpoint", help="checkpoint name on the host")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    args = parser.parse_args()
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint")

    try:
        conn = malv.connect(socket=args.socket, tcp=args.tcp, vm=args.vm, token=args.token)
        dev = malv.torch.device(conn) if args.device == "malv" else torch.device("cpu")
        model = build_model(args.model, args.seed).to(dev)
        # Built after .to(): on a PrivateUse1 device .to() replaces the Parameters.
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
        step = 0
        if args.resume:
            state = malv.checkpoint.load(args.checkpoint, conn=conn)
            step = int(state.pop("step").item())
            momentum = {k[len("momentum/"):]: state.pop(k) for k in list(state)
                        if k.startswith("momentum/")}
            model.load_state_dict(state)
            for name, p in model.named_parameters():
                if name in momentum:
                    optimizer.state[p]["momentum_buffer"] = momentum[name].to(dev)
        data = malv.data.HostDataset(args.dataset, batch_size=args.batch, seed=args.seed,
                                     output="device" if args.device == "malv" else "torch",
                                     first_batch=step, mean=MEAN, std=STD, conn=conn)
        loss_fn = torch.nn.CrossEntropyLoss()
        while step < args.steps:
            x, y = data.next_batch()
            if args.model == "resnet18":
                x = x.view(-1, 1, 28, 28)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.log_every == 0 or step == args.steps:
                print(json.dumps({"step": step, "loss": loss.item()}), flush=True)
            if args.checkpoint and (step % args.checkpoint_every == 0 or step == args.steps):
                # Device tensors: the host writes them from the VM's buffers.
                state = dict(model.state_dict(), step=torch.tensor(step))
                for name, p in model.named_parameters():
                    buffer = optimizer.state[p].get("momentum_buffer")
                    if buffer is not None:
                        state["momentum/" + name] = buffer
                malv.checkpoint.save(args.checkpoint, state, conn=conn)
        digest = float(sum(p.detach().abs().sum().item() for p in model.parameters()))
        print(json.dumps({"done": step, "parameter_abs_sum": digest}), flush=True)
    except malv.Error as e:
        print(f"train_fashion_mnist: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
