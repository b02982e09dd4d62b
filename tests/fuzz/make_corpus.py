#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_decoder into tests/fuzz/corpus/.

Each seed is a sequence of 64-byte wire::Command records (little-endian,
include/malv/protocol.h), the input format fuzz_decoder.cpp describes. A
handle argument written as P(i) (top 16 bits 0xffff) is replaced by the
harness with handle i of the session's pool:

  0 stream (normal)     1 stream (high)
  2 buffer of 4 KiB     3 buffer of 64 KiB (both zeroed)
  4 event               5 event
  6 + k                 kernel k of the registry (k: KERNELS below)
  21, 22, ...           handles returned by the input's own create commands

The arena (64 KiB) holds the name of kernel k at offset 64 * k, and from
32 KiB (MIRROR) a copy of the input itself, so that record j's bytes are at
MIRROR + 64 * j: a command can name a string or spec that the seed carries as
one of its own records (text(), dataset_spec()). Seeds use offsets from 4096
up for data. Re-run after changing the harness or the
protocol:  python3 tests/fuzz/make_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

(NOP, DEVICE_QUERY, BUFFER_ALLOC, BUFFER_FREE, WRITE, READ, COPY, MEMSET, STREAM_CREATE,
 STREAM_DESTROY, STREAM_SYNC, SYNC_ALL, EVENT_CREATE, EVENT_DESTROY, EVENT_RECORD, EVENT_WAIT,
 EVENT_SYNC, EVENT_ELAPSED, KERNEL_LOOKUP, LAUNCH, POLICY_LIST, POLICY_SELECT, DATASET_OPEN,
 DATASET_NEXT, DATASET_CLOSE, CHECKPOINT_SAVE, CHECKPOINT_RESTORE) = range(27)
MIRROR = 32768
SKIP_SUCCESS = 1

KERNELS = ["nop", "gemm", "add", "scale", "axpy", "bias_add", "relu", "relu_backward",
           "softmax_xent", "softmax_xent_backward", "sum_rows", "adam_step", "sgd_step", "fill",
           "argmax_rows"]


def P(i):
    return 0xFFFF000000000000 | i


S0, S1, B0, B1, E0, E1 = P(0), P(1), P(2), P(3), P(4), P(5)
NEW = P(21)  # the first handle the input itself creates


def K(name):
    return P(6 + KERNELS.index(name))


def cmd(opcode, *args, flags=0, extensions=0, reserved=b"\0\0\0"):
    args = list(args) + [0] * (6 - len(args))
    return struct.pack("<HHB3sQ6Q", opcode, flags, extensions, reserved, 0, *args)


def buf(handle, offset=0):
    return struct.pack("<IIQQ", 1, 0, handle, offset)


def i64(value):
    return struct.pack("<IIqQ", 2, 0, value, 0)


def f32(value):
    return struct.pack("<IIfIQ", 3, 0, value, 0, 0)


def at(record):
    """The arena offset of the input's record number `record`."""
    return MIRROR + 64 * record


def text(value):
    """A string as whole records (NUL-padded)."""
    data = value.encode()
    return data + b"\0" * (-len(data) % 64)


def dataset_spec(features, labels=b"", fmt=1, batch=32):
    """A DatasetSpec (include/malv/protocol.h), padded to whole records."""
    spec = struct.pack("<IIIIQQffII128s128s", fmt, 0, 0, batch, 7, 0, 0.5, 0.25, 0, 0,
                       features, labels)
    return spec + b"\0" * (-len(spec) % 64)


def launch(stream, kernel, *args, flags=0):
    body = b"".join(args)
    records = (len(body) + 63) // 64
    body += b"\0" * (records * 64 - len(body))
    return cmd(LAUNCH, stream, kernel, len(args), flags=flags, extensions=records) + body


SEEDS = {
    "nop": [cmd(NOP)],
    "device_query": [cmd(DEVICE_QUERY, 4096, 136)],
    "write_read_sync": [cmd(WRITE, S0, B0, 0, 8192, 256), cmd(READ, S0, B0, 0, 12288, 256),
                        cmd(STREAM_SYNC, S0)],
    "memset_copy_syncall": [cmd(MEMSET, S0, B1, 0, 1024, 7), cmd(COPY, S0, B1, 0, B0, 0, 1024),
                            cmd(SYNC_ALL)],
    "alloc_use_free_stale": [cmd(BUFFER_ALLOC, 1000), cmd(WRITE, S1, NEW, 0, 8192, 100),
                             cmd(BUFFER_FREE, NEW), cmd(WRITE, S1, NEW, 0, 8192, 100),
                             cmd(SYNC_ALL)],
    "stream_create_destroy": [cmd(STREAM_CREATE, 1), cmd(MEMSET, NEW, B0, 0, 64, 1),
                              cmd(STREAM_DESTROY, NEW), cmd(STREAM_SYNC, NEW)],
    "events": [cmd(EVENT_RECORD, S0, E0), cmd(EVENT_WAIT, S1, E0), cmd(EVENT_RECORD, S1, E1),
               cmd(EVENT_SYNC, E1), cmd(EVENT_ELAPSED, E0, E1), cmd(SYNC_ALL)],
    "event_create_destroy": [cmd(EVENT_CREATE), cmd(EVENT_RECORD, S0, NEW),
                             cmd(EVENT_DESTROY, NEW), cmd(EVENT_SYNC, NEW)],
    "kernel_lookup": [cmd(KERNEL_LOOKUP, 64 * KERNELS.index("gemm"), 4),
                      cmd(KERNEL_LOOKUP, 4096, 7)],
    "launch_add": [launch(S0, K("add"), buf(B0), buf(B0, 1024), buf(B1), i64(256)),
                   cmd(STREAM_SYNC, S0)],
    "launch_gemm": [launch(S0, K("gemm"), buf(B1), buf(B1, 16384), buf(B0), i64(16), i64(16),
                           i64(16), i64(0), i64(1), f32(1.0), f32(0.0)),
                    cmd(READ, S0, B0, 0, 8192, 1024), cmd(SYNC_ALL)],
    "launch_fill_scale": [launch(S1, K("fill"), buf(B1), i64(4096), f32(2.5)),
                          launch(S1, K("scale"), buf(B1), buf(B1, 16384), i64(4096), f32(0.5)),
                          cmd(STREAM_SYNC, S1)],
    "launch_softmax": [launch(S0, K("softmax_xent"), buf(B1), buf(B0), buf(B1, 32768),
                              buf(B0, 2048), i64(4), i64(8)),
                       launch(S0, K("softmax_xent_backward"), buf(B1, 32768), buf(B0),
                              buf(B1, 40960), i64(4), i64(8)),
                       cmd(STREAM_SYNC, S0)],
    "launch_adam": [launch(S0, K("adam_step"), buf(B1), buf(B1, 4096), buf(B1, 8192),
                           buf(B1, 12288), i64(1024), f32(0.001), f32(0.9), f32(0.999),
                           f32(1e-8), i64(1)),
                    launch(S0, K("sgd_step"), buf(B1), buf(B1, 4096), i64(1024), f32(0.1)),
                    cmd(SYNC_ALL)],
    "launch_rows": [launch(S0, K("bias_add"), buf(B1), buf(B0), i64(8), i64(16)),
                    launch(S0, K("sum_rows"), buf(B1), buf(B0, 512), i64(8), i64(16)),
                    launch(S0, K("argmax_rows"), buf(B1), buf(B0, 1024), i64(8), i64(16)),
                    launch(S0, K("relu"), buf(B1), buf(B1, 1024), i64(128)),
                    launch(S0, K("relu_backward"), buf(B1), buf(B1, 1024), buf(B1, 2048),
                           i64(128)),
                    launch(S1, K("axpy"), buf(B1), buf(B1, 1024), i64(128), f32(2.0)),
                    launch(S1, K("nop")),
                    cmd(SYNC_ALL)],
    "launch_out_of_bounds": [launch(S0, K("add"), buf(B0), buf(B0), buf(B0), i64(1 << 20)),
                             cmd(MEMSET, S0, B0, 0, 64, 0), cmd(STREAM_SYNC, S0)],
    "bad_label_fault": [cmd(MEMSET, S0, B0, 0, 64, 0x7f),
                        launch(S0, K("softmax_xent"), buf(B1), buf(B0), buf(B1, 32768),
                               buf(B0, 2048), i64(4), i64(8)),
                        cmd(STREAM_SYNC, S0)],
    "skip_success": [cmd(NOP, flags=SKIP_SUCCESS), cmd(MEMSET, S0, B0, 0, 64, 3, flags=SKIP_SUCCESS),
                     cmd(WRITE, S0, B0, 0, 8192, 64, flags=SKIP_SUCCESS),
                     cmd(WRITE, S0, B0, 4090, 8192, 64, flags=SKIP_SUCCESS),
                     cmd(STREAM_SYNC, S0, flags=SKIP_SUCCESS), cmd(SYNC_ALL)],
    "event_sync_skip": [launch(S0, K("gemm"), buf(B1), buf(B1, 16384), buf(B1, 32768), i64(64),
                               i64(64), i64(64), i64(0), i64(0), f32(1.0), f32(0.0)),
                        cmd(EVENT_RECORD, S0, E0), cmd(EVENT_SYNC, E0, flags=SKIP_SUCCESS)],
    "stream_error_order": [cmd(WRITE, S1, B0, 4000, 8192, 200), cmd(MEMSET, S1, B0, 0, 64, 1),
                           cmd(COPY, S1, B0, 0, B1, 65000, 1000), cmd(STREAM_SYNC, S1),
                           cmd(STREAM_SYNC, S1)],
    "malformed": [cmd(NOP, reserved=b"\1\0\0"), cmd(4242), cmd(LAUNCH, S0, K("nop"), 0,
                                                               extensions=200),
                  cmd(LAUNCH, S0, K("add"), 11, extensions=4) + b"\0" * 256,
                  cmd(MEMSET, S0, B0, 0, 8, 256), cmd(STREAM_CREATE, 2), cmd(NOP, 1),
                  cmd(NOP, flags=6)],
    # Record 0 lists into the arena; record 1 selects the string in record 2.
    "policy_list_select": [cmd(POLICY_LIST, 4096, 4096),
                           cmd(POLICY_SELECT, at(2), len("gpu_sched=builtin/fifo")),
                           text("gpu_sched=builtin/fifo")],
    "policy_select_bad": [cmd(POLICY_SELECT, at(3), 9), cmd(POLICY_SELECT, at(3), 300),
                          cmd(POLICY_SELECT, at(3) + 10, 12), text("gpu_sched=no-such/policy")],
    # Paths the catalog must refuse or not find: traversal, absolute, missing.
    "dataset_open_paths": [cmd(DATASET_OPEN, at(4), 304), cmd(DATASET_OPEN, at(9), 304),
                           cmd(DATASET_OPEN, at(14), 304), cmd(DATASET_OPEN, at(14), 300),
                           dataset_spec(b"../../etc/passwd"), dataset_spec(b"/etc/passwd"),
                           dataset_spec(b"fashion/train-images-idx3-ubyte")],
    "wrong_types_and_rights": [cmd(BUFFER_FREE, S0), cmd(STREAM_DESTROY, B0),
                               cmd(EVENT_SYNC, K("nop")), cmd(BUFFER_FREE, 0),
                               cmd(BUFFER_FREE, 0x1fff000100000000), cmd(SYNC_ALL)],
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, records in SEEDS.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(b"".join(records))
    print(f"wrote {len(SEEDS)} seeds to {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
