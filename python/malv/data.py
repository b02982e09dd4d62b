"""malv.data.HostDataset: the host's data pipeline as a Python iterable.

The host reads, decodes, shuffles and stages the batches on the device
(docs/protocol.md, "Data pipeline"); the guest only asks for the next one.
Each batch is copied once in the guest, from the channel into the arrays
it yields (a CPU tensor shares the array's memory).

    ds = HostDataset("fashion-mnist", batch_size=128, seed=1, output="torch")
    loader = torch.utils.data.DataLoader(ds, batch_size=None)  # num_workers=0
    for epoch in range(3):
        for x, y in loader:             # x float32 [rows, 784], y int64 [rows]
            ...

Iterating runs one epoch (steps_per_epoch batches, the last one short);
iterating again runs the next epoch, so the sequence of batches is the
host's: batch b is training step b of a run with that seed.

With the malv torch device (`import malv.torch`), output="device" (the
default once malv.torch is loaded) yields tensors already on the device:
the host copies each batch from its pipeline into the two new tensors'
buffers, queued on the VM's stream, so nothing crosses to the guest and the
guest does not wait for the batch:

    dev = malv.torch.device(conn)
    for x, y in HostDataset("fashion-mnist", batch_size=128, seed=1):
        loss = torch.nn.functional.cross_entropy(model(x), y)   # x, y on dev
"""

import sys

from . import _malv
from .errors import InvalidArgument, Unimplemented


FORMATS = {
    "fashion-mnist-train": 1,  # name = a directory with Fashion-MNIST's gzip IDX files
    "fashion-mnist-test": 2,
    "raw-u8": 3,   # name = uint8 features file (count x dims), labels = uint8 file
    "raw-f32": 4,  # name = little-endian float32 features file, labels = uint8 file
}


class _HostDataset:
    """A dataset served by the host's data pipeline.

    name: the dataset's path relative to one of the host's data directories
    (`malv serve --data-dir`), e.g. "fashion-mnist". batch_size: examples
    per batch (>= 1). shuffle: the host visits each epoch in a seeded
    permutation; it always shuffles, so shuffle=False is refused
    (malv.Unimplemented). seed: the permutation's seed (and, with
    first_batch, where a resumed run starts). output: "numpy" (features
    float32 [rows, dims], labels int32 [rows]) or "torch" (CPU tensors,
    labels int64 as torch's losses expect). format, labels, dims, classes:
    the dataset's format (FORMATS; raw formats name their labels file and
    give dims and classes). output="device": tensors of the malv torch
    device (features float32, labels int64), copied by the host (the
    default when malv.torch is loaded and serves this connection, else
    "numpy"). mean, std: uint8 inputs become
    (byte / 255 - mean) / std. conn: the connection (default:
    malv.default_connection()).
    """

    def __init__(self, name, batch_size=128, shuffle=True, seed=1, *, output=None,
                 format="fashion-mnist-train", labels="", dims=0, classes=0, mean=0.0, std=1.0,
                 first_batch=0, max_depth=0, conn=None):
        if not shuffle:
            raise Unimplemented("HostDataset: the host's data pipeline always visits an epoch in "
                                "the seeded permutation of `seed`; shuffle=False is not offered")
        if conn is None:
            from . import default_connection
            conn = default_connection()
        device = sys.modules.get(__package__ + ".torch")
        if output is None:
            output = "device" if device is not None and device.attached() is conn else "numpy"
        if output not in ("numpy", "torch", "device"):
            raise InvalidArgument(f"HostDataset: output {output!r}, expected 'numpy', 'torch' or "
                                  "'device'")
        if output == "device":
            from . import torch as device
            if device.attached() is None:
                device.device(conn)
            elif device.attached() is not conn:
                raise InvalidArgument("HostDataset: output 'device', but the malv torch device "
                                      "serves another connection (pass that one as conn=)")
        self._device = device if output == "device" else None
        if format not in FORMATS:
            raise InvalidArgument(f"HostDataset: format {format!r}, expected one of "
                                  f"{', '.join(FORMATS)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 0 < batch_size < 2**32:
            raise InvalidArgument(f"HostDataset: batch_size {batch_size!r}, expected an int >= 1")
        if output == "torch":
            import torch  # noqa: F401  (fails here, not in the first batch)
        self.name = name
        self.output = output
        self._dataset = _malv.Dataset(conn, FORMATS[format], str(name), str(labels), int(dims),
                                      int(classes), batch_size, int(seed), int(first_batch),
                                      float(mean), float(std), int(max_depth))

    @property
    def examples(self):
        return self._dataset.examples

    @property
    def batch_size(self):
        return self._dataset.batch

    @property
    def dims(self):
        """Features per example."""
        return self._dataset.dims

    @property
    def steps_per_epoch(self):
        return self._dataset.steps_per_epoch

    @property
    def position(self):
        """Index of the next batch (resume with first_batch=position)."""
        return self._dataset.position

    def __len__(self):
        return self._dataset.steps_per_epoch

    def next_batch(self):
        """The next batch of the host's sequence, whatever the epoch."""
        if self._device is not None:
            return self._next_on_device()
        x, y = self._dataset.next()
        if self.output == "torch":
            import torch
            return torch.from_numpy(x), torch.from_numpy(y).long()
        return x, y

    def _next_on_device(self):
        import torch
        dev = self._device.device_type()
        batch = self._dataset.batch
        x = torch.empty((batch, self._dataset.dims), dtype=torch.float32, device=dev)
        y = torch.empty((batch,), dtype=torch.int32, device=dev)
        rows = self._dataset.next_into(self._device.buffer_view(x), self._device.buffer_view(y))
        if rows < batch:
            x, y = x[:rows], y[:rows]
        return x, y.long()

    def __iter__(self):
        # The rest of the current epoch (all of it at an epoch's start).
        remaining = self.steps_per_epoch - self.position % self.steps_per_epoch
        for _ in range(remaining):
            yield self.next_batch()

    def close(self):
        """Releases the host's pipeline and this dataset's device buffers."""
        self._dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def __getattr__(name):
    """HostDataset is made on first use: a torch.utils.data.IterableDataset
    (what a DataLoader takes as an iterable dataset) when torch imports, a
    plain iterable otherwise; so `import malv` does not import torch."""
    if name != "HostDataset":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from torch.utils.data import IterableDataset as base
        bases = (_HostDataset, base)
    except ImportError:  # numpy only
        bases = (_HostDataset,)
    cls = type("HostDataset", bases, {"__doc__": _HostDataset.__doc__,
                                      "__module__": __name__})
    globals()["HostDataset"] = cls
    return cls
