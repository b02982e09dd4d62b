"""malv.checkpoint: state_dicts saved and loaded by the host's checkpoint service.

    malv.checkpoint.save("run1", model.state_dict())        # returns once durable
    model.load_state_dict(malv.checkpoint.load("run1"))

The host writes the file atomically (a temporary file, fsync, rename, fsync
of the directory) with a CRC-32, into this VM's own checkpoint directory,
and counts it against the VM's checkpoint quota (docs/operations.md). A
checkpoint name is [A-Za-z0-9._-], 1 to 63 bytes, not starting with '.'.

Values are numpy arrays, CPU torch tensors or tensors of the malv torch
device (any dtype, any shape; non-contiguous ones are saved in C order). A
device tensor is saved by the host from the VM's own buffer: its bytes do
not cross to the guest. load() gives back what was saved: torch tensors for
tensors (when torch imports; those saved from the device come back on the
device when malv.torch is loaded, restored by the host into the new
tensor's buffer, unless map_location="cpu"), numpy arrays for arrays, in
the same order. Each value is one entry of the file under its
key (up to wire::kMaxCheckpointEntryName bytes), so a C++ guest restores
the same entries by name. The keys, dtypes and shapes are kept in the
checkpoint's metadata (a JSON manifest), or, past the metadata's 64 KiB, in
an entry of their own; an empty entry "__malv__.index" lets load() ask
for the manifest first.
"""

import collections
import json

import numpy as np

from . import _malv
from .errors import DataLoss, InvalidArgument

FORMAT = "malv.state_dict/1"
INDEX_ENTRY = "__malv__.index"
MANIFEST_ENTRY = "__malv__.manifest"
MAX_METADATA = 64 * 1024  # wire::kMaxCheckpointMetadata


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _device_module():
    """malv.torch when it is loaded (device tensors exist only then)."""
    import sys
    return sys.modules.get(__package__ + ".torch")


def _as_bytes(key, value):
    """(kind, dtype name, shape, value's bytes in C order: a uint8 array, or
    a device buffer view for a tensor of the malv device, device flag)."""
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        t = value.detach()
        device = _device_module()
        if device is not None and t.device == device.device_type():
            if t.numel() == 0:  # no buffer to name: nothing to copy either
                return ("torch", dtype, list(value.shape), np.zeros(0, np.uint8), True)
            t = t.contiguous()
            return ("torch", dtype, list(value.shape), device.buffer_view(t), True)
        if t.device.type != "cpu":
            raise InvalidArgument(f"checkpoint entry {key!r}: a tensor on {value.device}; "
                                  "expected a CPU tensor or one of the malv device")
        t = t.contiguous().reshape(-1)
        return ("torch", dtype, list(value.shape), t.view(torch.uint8).numpy(), False)
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise InvalidArgument(f"checkpoint entry {key!r}: an array of Python objects")
        a = np.ascontiguousarray(value)  # (a 0-d array comes back 1-d)
        return ("numpy", a.dtype.str, list(value.shape), a.reshape(-1).view(np.uint8), False)
    raise InvalidArgument(f"checkpoint entry {key!r}: a {type(value).__name__}; expected a numpy "
                          "array or a torch tensor")


def _from_bytes(key, kind, dtype, shape, blob):
    if kind == "torch":
        torch = _torch()
        if torch is not None:
            torch_dtype = _torch_dtype(torch, key, dtype)
            if blob.size == 0:  # a uint8 array of no bytes cannot be viewed as a wider dtype
                return torch.empty(tuple(shape), dtype=torch_dtype)
            return torch.from_numpy(blob).view(torch_dtype).reshape(tuple(shape))
        if dtype == "bfloat16":
            raise InvalidArgument(f"checkpoint entry {key!r} is a bfloat16 tensor: load it with torch")
        dtype = np.dtype(dtype).str
    return blob.view(np.dtype(dtype)).reshape(tuple(shape))


def save(name, state_dict, conn=None):
    """Saves `state_dict` (a mapping of str keys to arrays or tensors, on the
    CPU or the malv device) as checkpoint `name` of this VM, replacing one of
    that name atomically. Returns the file's size once it is on disk."""
    if conn is None:
        from . import default_connection
        conn = default_connection()
    if not hasattr(state_dict, "items"):
        raise InvalidArgument(f"checkpoint {name!r}: state_dict is a {type(state_dict).__name__}, "
                              "expected a mapping")
    entries = [(INDEX_ENTRY, np.zeros(0, np.uint8))]
    manifest = []
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"checkpoint {name!r}: key {key!r} is not a str")
        if key.startswith("__malv__."):
            raise InvalidArgument(f"checkpoint {name!r}: key {key!r}: the prefix '__malv__.' is "
                                  "this module's own")
        kind, dtype, shape, blob, on_device = _as_bytes(key, value)
        manifest.append([key, kind, dtype, shape] + (["malv"] if on_device else []))
        entries.append((key, blob))
    text = json.dumps({"format": FORMAT, "entries": manifest}, separators=(",", ":")).encode()
    if len(text) > MAX_METADATA:
        entries.append((MANIFEST_ENTRY, np.frombuffer(text, np.uint8)))
        text = json.dumps({"format": FORMAT, "manifest_bytes": len(text)}).encode()
    return _malv.save_checkpoint(conn, str(name), entries, text)


def load(name, conn=None, map_location=None):
    """Loads checkpoint `name` saved by save(): an OrderedDict of what was
    saved. Tensors saved from the malv device come back on it when
    malv.torch is loaded (map_location=None), or on the CPU with
    map_location="cpu". malv.NotFound when there is no such checkpoint (or
    it was not saved by malv.checkpoint), malv.DataLoss when the file is
    damaged."""
    if map_location not in (None, "cpu"):
        raise InvalidArgument(f"checkpoint {name!r}: map_location {map_location!r}, expected "
                              "None (where each tensor was) or 'cpu'")
    if conn is None:
        from . import default_connection
        conn = default_connection()
    name = str(name)
    metadata, _ = _malv.restore_checkpoint(conn, name, [(INDEX_ENTRY, 0)])
    try:
        manifest = json.loads(metadata)
    except ValueError as e:
        raise DataLoss(f"checkpoint {name!r}: its manifest is not JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataLoss(f"checkpoint {name!r}: not a {FORMAT} manifest")
    if "entries" not in manifest:
        _, (blob,) = _malv.restore_checkpoint(
            conn, name, [(MANIFEST_ENTRY, int(manifest.get("manifest_bytes", 0)))])
        manifest = json.loads(blob.tobytes())
    device = _device_module() if map_location is None else None
    if device is not None and device.attached() is not conn:
        device = None  # the device serves another connection: tensors come back on the CPU
    requests = []
    targets = []  # the device tensor restored in place, or None
    for key, kind, dtype, shape, *where in manifest["entries"]:
        count = int(np.prod(shape, dtype=np.int64))
        target = None
        if where == ["malv"] and device is not None and count > 0:
            torch = _torch()
            target = torch.empty(tuple(shape), dtype=_torch_dtype(torch, key, dtype),
                                 device=device.device_type())
            requests.append((key, device.buffer_view(target)))
        else:
            requests.append((key, count * _itemsize(kind, dtype)))
        targets.append(target)
    out = collections.OrderedDict()
    if not requests:
        return out
    _, blobs = _malv.restore_checkpoint(conn, name, requests)
    for (key, kind, dtype, shape, *where), blob, target in zip(manifest["entries"], blobs,
                                                              targets):
        if target is not None:
            out[key] = target
            continue
        value = _from_bytes(key, kind, dtype, shape, blob)
        if where == ["malv"] and device is not None:
            value = value.to(device.device_type())
        out[key] = value
    return out


def _torch_dtype(torch, key, dtype):
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise DataLoss(f"checkpoint entry {key!r}: unknown torch dtype {dtype!r}")
    return torch_dtype


def _itemsize(kind, dtype):
    if kind == "torch":
        torch = _torch()
        if torch is not None:
            t = getattr(torch, dtype, None)
            if isinstance(t, torch.dtype):
                return torch.empty(0, dtype=t).element_size()
        if dtype == "bfloat16":
            return 2
        return np.dtype(dtype).itemsize
    return np.dtype(dtype).itemsize
