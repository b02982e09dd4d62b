#!/usr/bin/env python3
"""Switches a training VM's MLaaS policies while it trains, through the host's
admin API, and prints what the VM did under each one.

    PYTHONPATH=build/release/python /usr/bin/python3 examples/python/switch_policies.py \
        --admin /run/malv/admin.sock --vm train-a --class gpu_sched \
        --policies builtin/fifo,malv_sched_basic/fair-share --every 2 --rounds 4

Each round selects the next policy (PUT /vms/{vm}/policy/{class}), waits
--every seconds, and prints one JSON line: the policy, and the VM's commands,
busy seconds and errors in that round (from GET /vms/{vm}). docs/python.md
describes malv.admin.Client.
"""

import argparse
import json
import sys
import time

import malv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin", help="the host's admin socket (default: MALV_ADMIN_SOCKET, "
                        "else the host's default)")
    parser.add_argument("--vm", required=True, help="the training VM")
    parser.add_argument("--class", dest="policy_class", default="gpu_sched",
                        help="policy class: gpu_sched, memory, cpu_sched or prefetch")
    parser.add_argument("--policies", required=True,
                        help="comma-separated policies to cycle through, e.g. fifo,fair-share")
    parser.add_argument("--every", type=float, default=2.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds in all")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    if not policies or args.rounds < 1 or args.every <= 0:
        parser.error("--policies needs at least one name; --rounds and --every must be positive")

    admin = malv.admin.Client(args.admin)
    try:
        before = admin.stats(args.vm)
        for round_ in range(args.rounds):
            policy = policies[round_ % len(policies)]
            chosen = admin.select_policy(args.vm, args.policy_class, policy)
            time.sleep(args.every)
            after = admin.stats(args.vm)
            print(json.dumps({
                "round": round_,
                "class": args.policy_class,
                "policy": chosen.policy,
                "commands": after.commands - before.commands,
                "busy_seconds": round(after.busy_seconds - before.busy_seconds, 6),
                "errors": after.errors - before.errors,
                "sessions": after.sessions,
            }), flush=True)
            before = after
    except malv.Error as e:
        print(f"switch_policies: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
