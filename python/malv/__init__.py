"""MaLV-OS for Python: a guest's connection to a MaLV-OS host, its offload
services (the host's data pipeline, checkpoints) and the host's admin API.

    import malv
    conn = malv.connect(socket="/run/malv/malv.sock", vm="train-a", token="secret-a")
    for x, y in malv.data.HostDataset("fashion-mnist", batch_size=128, seed=1, conn=conn):
        ...
    malv.checkpoint.save("run1", model.state_dict(), conn=conn)

docs/python.md describes the whole package. Build tree:
PYTHONPATH=build/release/python /usr/bin/python3 -c "import malv"
"""

import os

from . import _malv
from .errors import (ALL as _ALL_ERRORS, Aborted, AlreadyExists, DataLoss, DeadlineExceeded,
                     DeviceReset, Disconnected, Error, FailedPrecondition, Internal, InvalidArgument,
                     IoError, NotFound, OutOfRange, PermissionDenied, QuotaExceeded,
                     ResourceExhausted, StaleHandle, Unauthenticated, Unavailable, Unimplemented,
                     WrongHandleType)

__all__ = ["connect", "default_connection", "Connection", "Error", "data", "checkpoint", "admin"] + [
    cls.__name__ for cls in _ALL_ERRORS] + ["ResourceExhausted"]

_classes = {cls.code_value: cls for cls in _ALL_ERRORS}
_classes[-1] = Error
_malv._set_error_classes(_classes)

Connection = _malv.Connection


def _runtime_dir():
    """Where `malv serve` puts its sockets by default (host/host_config.cpp)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "malv")
    if os.geteuid() == 0:
        return "/run/malv"
    return f"/tmp/malv-{os.geteuid()}"


def _split_address(text, what, env):
    """HOST:PORT or CID:PORT -> (host, port), or InvalidArgument naming the source."""
    source = f"{what} {text!r}" + (f" (from {env})" if env else "")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"{source}: expected {'CID' if what == 'vsock' else 'HOST'}:PORT "
                              "with a port of 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def connect(socket=None, tcp=None, vm=None, token=None, *, vsock=None, ivshmem=None,
            arena_bytes=0):
    """Opens a session with a MaLV-OS host; the arguments mean what
    `malv guest`'s flags do.

    socket: the host's Unix socket (shared-memory channel); tcp: "HOST:PORT";
    vsock: "CID:PORT" (inside a VM; the host's CID is 2); ivshmem: True, or
    the PCI address of the VM's ivshmem device. At most one. An argument
    left out is read from MALV_SOCKET / MALV_TCP / MALV_VSOCK, MALV_VM and
    MALV_TOKEN; with none, a VM with an ivshmem device uses it, anything
    else the host's default socket ($XDG_RUNTIME_DIR/malv/malv.sock,
    /run/malv/malv.sock as root, /tmp/malv-<uid>/malv.sock). vm defaults to
    "guest", token to none.

    Raises malv.Unauthenticated (a malv.PermissionDenied) for an unknown VM or
    a wrong token, malv.InvalidArgument for a bad address, malv.Error
    subclasses for anything else the host or the channel answers.
    """
    given = {k: v for k, v in (("socket", socket), ("tcp", tcp), ("vsock", vsock),
                               ("ivshmem", ivshmem)) if v not in (None, False)}
    sources = {k: None for k in given}
    if not given:
        for key, env in (("socket", "MALV_SOCKET"), ("tcp", "MALV_TCP"), ("vsock", "MALV_VSOCK")):
            if os.environ.get(env):
                given[key] = os.environ[env]
                sources[key] = env
    if len(given) > 1:
        named = ", ".join(f"{k} (from {sources[k]})" if sources[k] else k for k in given)
        raise InvalidArgument(f"connect: at most one of socket, tcp, vsock and ivshmem, got {named}")
    vm = vm if vm is not None else os.environ.get("MALV_VM", "guest")
    token = token if token is not None else os.environ.get("MALV_TOKEN", "")
    if not vm:
        raise InvalidArgument("connect: the VM name is empty")
    arena_bytes = int(arena_bytes)
    if not given:
        if _malv.ivshmem_device_present():
            given = {"ivshmem": True}
        else:
            given = {"socket": os.path.join(_runtime_dir(), "malv.sock")}
    (kind, where), = given.items()
    if kind == "socket":
        return _malv.Connection.connect_unix(os.fspath(where), vm, token, arena_bytes)
    if kind == "tcp":
        host, port = _split_address(str(where), "tcp", sources.get("tcp"))
        return _malv.Connection.connect_tcp(host, port, vm, token, arena_bytes)
    if kind == "vsock":
        cid, port = _split_address(str(where), "vsock", sources.get("vsock"))
        if not cid.isdigit():
            raise InvalidArgument(f"vsock {where!r}: the CID must be a number")
        return _malv.Connection.connect_vsock(int(cid), port, vm, token, arena_bytes)
    device = "" if where is True else str(where)
    return _malv.Connection.connect_ivshmem(device, vm, token, arena_bytes)


_default = None


def default_connection():
    """The connection services use when none is given: connect() from the
    environment, opened on first use and kept (reopened if closed)."""
    global _default
    if _default is None or _default.closed:
        _default = connect()
    return _default


from . import admin, checkpoint, data  # noqa: E402  (they use the names above)
