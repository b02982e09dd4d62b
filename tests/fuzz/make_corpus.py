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
one of its own records (text(), dataset_spec(), checkpoint_spec(); with_specs()
places specs after a seed's commands and hands the commands their offsets).
Seeds use offsets from 4096 up for data. The checkpoint store holds "seed"
(entries "a": 4096 bytes, "b": 64 bytes; 16 bytes of metadata) and "damaged"
at the start of every input; the buffer fields of a spec's entries may be
P(i) as well. Re-run after changing the harness or the
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


def checkpoint_spec(name, entries, metadata=b"", metadata_bytes=None, entry_count=None):
    """A checkpoint spec (CheckpointHeader, CheckpointEntry records, metadata),
    padded to whole records. entries: (buffer, offset, bytes, entry name).
    The harness turns pool selectors in the buffer fields into handles."""
    if metadata_bytes is None:
        metadata_bytes = len(metadata)
    if entry_count is None:
        entry_count = len(entries)
    spec = struct.pack("<64sII", name, entry_count, metadata_bytes)
    for buffer, offset, size, entry in entries:
        spec += struct.pack("<QQQ40s", buffer, offset, size, entry)
    spec += metadata
    return spec + b"\0" * (-len(spec) % 64)


def with_specs(commands, *specs):
    """A seed of commands followed by specs (each whole records): commands is
    called with spec(i) -> (arena offset, bytes) of spec i, and must return
    the same number of records whatever it is given."""
    def place(offsets):
        return commands(lambda i: offsets[i])
    records = len(b"".join(place([(0, 0)] * len(specs)))) // 64
    offsets = []
    for spec in specs:
        offsets.append((at(records), len(spec)))
        records += len(spec) // 64
    return place(offsets) + list(specs)


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
    # Aliasing: a kernel whose labels are its own output. The labels pass the
    # range check, then the kernel overwrites them with floats and reads them
    # again (the bug this seed was written to find: labels re-read after check).
    "alias_labels_probs": [launch(S0, K("softmax_xent"), buf(B1), buf(B0), buf(B0), buf(B1, 60000),
                                  i64(4), i64(8)),
                           cmd(STREAM_SYNC, S0)],
    "alias_labels_grad": [launch(S0, K("fill"), buf(B1), i64(64), f32(0.25)),
                          launch(S0, K("softmax_xent_backward"), buf(B1), buf(B0), buf(B0), i64(4),
                                 i64(8)),
                          cmd(STREAM_SYNC, S0)],
    # The labels change from the second stream while the first one's kernels
    # check and use them (no event orders the two streams).
    "race_labels_second_stream": [
        launch(S0, K("softmax_xent"), buf(B1), buf(B0), buf(B1, 32768), buf(B1, 60000), i64(64),
               i64(8)),
        cmd(MEMSET, S1, B0, 0, 256, 0x7f),
        launch(S0, K("softmax_xent_backward"), buf(B1), buf(B0), buf(B1, 32768), i64(64), i64(8)),
        cmd(WRITE, S1, B0, 0, 8192, 256),
        launch(S0, K("softmax_xent"), buf(B1), buf(B0), buf(B1, 32768), buf(B1, 60000), i64(64),
               i64(8)),
        launch(S1, K("fill"), buf(B0), i64(64), f32(3.0e9)),
        launch(S0, K("softmax_xent_backward"), buf(B1), buf(B0), buf(B1, 32768), i64(64), i64(8)),
        cmd(SYNC_ALL)],
    # In-place and overlapping operands, the output rewritten from the other stream.
    "alias_inplace_two_streams": [
        launch(S0, K("gemm"), buf(B1), buf(B1), buf(B1), i64(32), i64(32), i64(32), i64(0),
               i64(0), f32(1.0), f32(1.0)),
        cmd(COPY, S1, B1, 0, B1, 64, 4096),
        launch(S0, K("argmax_rows"), buf(B1), buf(B1), i64(16), i64(16)),
        launch(S1, K("sum_rows"), buf(B1), buf(B1, 4), i64(16), i64(16)),
        launch(S0, K("adam_step"), buf(B1), buf(B1), buf(B1), buf(B1), i64(1024), f32(0.001),
               f32(0.9), f32(0.999), f32(1e-8), i64(1)),
        cmd(SYNC_ALL)],
    # The checkpoint service: save two entries and restore them (the harness
    # lets the save finish first), the second stream changing the source.
    "checkpoint_save_restore": with_specs(
        lambda spec: [cmd(MEMSET, S0, B0, 0, 4096, 9), cmd(CHECKPOINT_SAVE, S0, *spec(0)),
                      cmd(MEMSET, S1, B0, 0, 4096, 1), cmd(CHECKPOINT_RESTORE, S1, *spec(0)),
                      cmd(READ, S1, B1, 0, 8192, 64), cmd(SYNC_ALL)],
        checkpoint_spec(b"s1", [(B0, 0, 4096, b"a"), (B1, 128, 64, b"b")], b"meta" * 4)),
    # The files every input starts with: "seed" restored (and with a wrong
    # size, into a too-small range), "damaged", and one that is not there.
    "checkpoint_restore_fixtures": with_specs(
        lambda spec: [cmd(CHECKPOINT_RESTORE, S0, *spec(0)), cmd(CHECKPOINT_RESTORE, S0, *spec(1)),
                      cmd(CHECKPOINT_RESTORE, S0, *spec(2)), cmd(CHECKPOINT_RESTORE, S0, *spec(3)),
                      cmd(READ, S0, B0, 0, 8192, 64), cmd(STREAM_SYNC, S0), cmd(SYNC_ALL)],
        checkpoint_spec(b"seed", [(B0, 0, 4096, b"a"), (B1, 0, 64, b"b")], b"\0" * 16),
        checkpoint_spec(b"damaged", [(B0, 0, 4096, b"a"), (B1, 0, 64, b"b")], b"\0" * 16),
        checkpoint_spec(b"missing", [(B0, 0, 4096, b"a"), (B1, 0, 64, b"b")], b"\0" * 16),
        checkpoint_spec(b"seed", [(B0, 64, 4096, b"a"), (B1, 0, 32, b"b")], b"\0" * 16)),
    # Specs the service must refuse: a name that climbs out, no entries, a
    # repeated entry name, too much metadata, a range past the buffer and a
    # handle that is none, a spec longer than its command says, one past the
    # arena's end.
    "checkpoint_bad_specs": with_specs(
        lambda spec: [cmd(CHECKPOINT_SAVE, S0, *spec(0)), cmd(CHECKPOINT_SAVE, S0, *spec(1)),
                      cmd(CHECKPOINT_SAVE, S0, *spec(2)), cmd(CHECKPOINT_SAVE, S0, *spec(3)),
                      cmd(CHECKPOINT_SAVE, S0, *spec(4)),
                      cmd(CHECKPOINT_RESTORE, S0, spec(4)[0], 100),
                      cmd(CHECKPOINT_SAVE, S0, 65500, 192), cmd(SYNC_ALL)],
        checkpoint_spec(b"../up", [(B0, 0, 64, b"a")], b"\0" * 16),
        checkpoint_spec(b"none", [], entry_count=0),
        checkpoint_spec(b"twice", [(B0, 0, 64, b"a"), (B0, 64, 64, b"a")], b"\0" * 16),
        checkpoint_spec(b"meta", [(B0, 0, 64, b"a")], metadata_bytes=1 << 20),
        checkpoint_spec(b"past", [(B0, 4000, 4096, b"a"), (P(200), 0, 64, b"b")], b"\0" * 16)),
    # One buffer saved twice and restored into overlapping ranges of itself
    # while the second stream launches over it.
    "checkpoint_alias": with_specs(
        lambda spec: [cmd(CHECKPOINT_SAVE, S0, *spec(0)),
                      launch(S1, K("scale"), buf(B1), buf(B1), i64(16384), f32(2.0)),
                      cmd(CHECKPOINT_RESTORE, S0, *spec(0)), cmd(SYNC_ALL)],
        checkpoint_spec(b"overlap", [(B1, 0, 32768, b"lo"), (B1, 16384, 32768, b"hi")],
                        b"\0" * 16)),
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
