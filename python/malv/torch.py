"""The ``malv`` torch device: PyTorch operators run on the host's accelerator.

``import malv.torch`` loads the device (PyTorch's ``PrivateUse1`` key, which
Debian's torch 1.13 names ``privateuseone``); ``device(conn)`` attaches a
connection and returns the ``torch.device``. Model code then runs unmodified:

    import malv, malv.torch, torch
    dev = malv.torch.device(malv.connect())
    model = torch.nn.Linear(4, 2).to(dev)      # build the optimiser after .to()
    y = model(torch.randn(3, 4).to(dev))
    print(y.cpu())

Every tensor on the device is a buffer of the VM on the host (its quota
applies); every operator is checked and run by the host, queued on the VM's
stream: the guest waits only when it reads a value (``.item()``, ``.cpu()``,
printing). docs/torch.md has the design and what is refused.
"""

import torch

from . import _torch  # registers the device's kernels with PyTorch

_device = torch.device("privateuseone", 0)
_attached = None


def device(conn=None):
    """The malv torch device, with ``conn`` (or a connection from the
    environment: MALV_SOCKET / MALV_TCP, MALV_VM, MALV_TOKEN) attached."""
    global _attached
    if conn is None and _attached is None:
        from . import connect
        conn = connect()
    if conn is not None and conn is not _attached:
        _torch._attach(conn._c_api())
        _attached = conn
    return _device


def attached():
    """The connection the device uses, or None before device() attached one."""
    return _attached


def device_type():
    """The device's ``torch.device`` without attaching a connection."""
    return _device


def buffer_view(tensor):
    """For the package's host services (HostDataset, checkpoints): a capsule
    naming the VM buffer range that holds a contiguous device tensor, which
    it keeps alive; the host reads or writes that range in place."""
    if tensor.device != _device or not tensor.is_contiguous():
        raise ValueError(f"buffer_view: a contiguous tensor of the malv device, not one on "
                         f"{tensor.device}{'' if tensor.is_contiguous() else ' (non-contiguous)'}")
    return _torch._buffer_view(tensor.data_ptr(), tensor.numel() * tensor.element_size(), tensor)


def synchronize():
    """Waits until every operator queued on the device has run; raises the
    first error one of them met."""
    _torch.synchronize()


def empty_cache():
    """Gives back to the host the device memory PyTorch freed and the device
    kept for reuse (as torch.cuda.empty_cache())."""
    _torch.empty_cache()


def stats():
    """Device memory this process holds on the host (buffers, bytes; cached_bytes:
    freed and kept for reuse), and operators sent (operators_in_guest: run on the
    guest's CPU for want of a meta kernel; operators_held: queued, gathered for
    the next batch while the host runs those in flight; batches_sent: the batches
    the connection sent, each one command carrying the operators gathered)."""
    return _torch.stats()
