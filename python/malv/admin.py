"""malv.admin.Client: the host's admin API (HTTP + JSON on its admin Unix
socket; docs/operations.md, "Admin API") as Python objects.

    admin = malv.admin.Client("/run/malv/admin.sock")
    vm = admin.create_vm("train-a", token="secret-a", memory_bytes=1 << 30, weight=2.0)
    admin.update_vm("train-a", weight=3.0)
    admin.select_policy("train-a", "gpu_sched", "priority")
    print(admin.vm("train-a").stats)                    # live statistics
    print(admin.metrics().value("malv_vm_memory_used_bytes", vm="train-a"))

Every answer is a Record (a dict whose keys are also attributes, nested);
an error reply raises the malv.Error subclass of its code ("not_found" ->
malv.NotFound, "resource_exhausted" -> malv.QuotaExceeded, ...) with the
host's message. Pure Python (http.client): it needs no extension.
"""

import http.client
import json
import os
import socket as _socket
import urllib.parse

from .errors import Disconnected, Error, InvalidArgument, from_code


class Record(dict):
    """A JSON object whose keys are also attributes (nested objects too)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    @staticmethod
    def wrap(value):
        if isinstance(value, dict):
            return Record({k: Record.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [Record.wrap(v) for v in value]
        return value


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Sample:
    """One Prometheus sample: name, labels (dict), value (float)."""

    __slots__ = ("name", "labels", "value")

    def __init__(self, name, labels, value):
        self.name, self.labels, self.value = name, labels, value

    def __repr__(self):
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}} {self.value}"


class Metrics:
    """GET /metrics, parsed: .samples (every sample), .text (as served)."""

    def __init__(self, text):
        self.text = text
        self.samples = [s for s in (_parse_sample(line) for line in text.splitlines()) if s]

    def find(self, name, **labels):
        """The samples of `name` whose labels include `labels`."""
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == str(v) for k, v in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample of `name` with `labels`; KeyError if
        none or several match."""
        found = self.find(name, **labels)
        if len(found) != 1:
            raise KeyError(f"{len(found)} samples of {name} with {labels}")
        return found[0].value

    def names(self):
        return sorted({s.name for s in self.samples})


def _parse_sample(line):
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    labels = {}
    if "{" in line:
        name, rest = line.split("{", 1)
        body, _, value = rest.rpartition("}")
        i = 0
        while i < len(body):
            eq = body.index("=", i)
            key = body[i:eq].strip().lstrip(",").strip()
            j = eq + 2  # past ="
            text = []
            while body[j] != '"':
                if body[j] == "\\":
                    j += 1
                    text.append({"n": "\n"}.get(body[j], body[j]))
                else:
                    text.append(body[j])
                j += 1
            labels[key] = "".join(text)
            i = j + 1
    else:
        name, _, value = line.partition(" ")
    fields = value.split()
    if not fields:
        return None
    return Sample(name.strip(), labels, float(fields[0]))


class Client:
    """The admin API of the host whose admin socket is `socket` (default:
    MALV_ADMIN_SOCKET, else the host's default admin.sock)."""

    def __init__(self, socket=None, timeout=30.0):
        if socket is None:
            socket = os.environ.get("MALV_ADMIN_SOCKET")
        if socket is None:
            from . import _runtime_dir
            socket = os.path.join(_runtime_dir(), "admin.sock")
        self.socket = os.fspath(socket)
        self.timeout = timeout

    # -- transport ---------------------------------------------------------
    def request(self, method, path, body=None):
        """One request; the decoded JSON answer (str for text), or the
        malv.Error of an error reply."""
        conn = _UnixConnection(self.socket, self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except OSError as e:
                raise Disconnected(f"admin API at {self.socket}: {method} {path}: {e}") from None
            kind = response.getheader("Content-Type", "")
            if response.status >= 400:
                try:
                    err = json.loads(data)
                    code = err.get("error", "internal")
                    message = err.get("message", "")
                    if message.startswith(f"{code}: "):  # the host's text repeats the code
                        message = message[len(code) + 2:]
                    raise from_code(code, message, [f"{method} {path}"])
                except ValueError:
                    raise Error(f"{method} {path}: HTTP {response.status}: "
                                f"{data.decode(errors='replace')}", code="internal") from None
            if "json" in kind:
                return Record.wrap(json.loads(data))
            return data.decode()
        finally:
            conn.close()

    @staticmethod
    def _quote(part):
        if not isinstance(part, str) or not part:
            raise InvalidArgument(f"admin API: {part!r} is not a name")
        return urllib.parse.quote(part, safe="")

    # -- host ----------------------------------------------------------------
    def health(self):
        """Backend and device."""
        return self.request("GET", "/health")

    # -- VMs and quotas --------------------------------------------------------
    def vms(self):
        """Every VM: its settings (quotas, weight, priority, ...) and live stats."""
        return self.request("GET", "/vms")

    def vm(self, name):
        return self.request("GET", f"/vms/{self._quote(name)}")

    def stats(self, name=None):
        """Live statistics of one VM, or {name: stats} of every VM."""
        if name is not None:
            return self.vm(name).get("stats")
        return Record({vm["name"]: vm.get("stats") for vm in self.vms()})

    def create_vm(self, name, **settings):
        """POST /vms: token, memory_bytes, weight, priority, max_streams,
        max_handles, max_sessions, host_memory_bytes, checkpoint_bytes,
        max_checkpoints, gpu_policy, vsock_cid (docs/operations.md)."""
        return self.request("POST", "/vms", dict(settings, name=name))

    def update_vm(self, name, **settings):
        """PATCH /vms/{name}: any of create_vm's settings, all or nothing."""
        if not settings:
            raise InvalidArgument(f"update_vm {name!r}: nothing to change")
        return self.request("PATCH", f"/vms/{self._quote(name)}", settings)

    def set_quota(self, name, **limits):
        """The same as update_vm, for the limits (memory_bytes=..., ...)."""
        return self.update_vm(name, **limits)

    def delete_vm(self, name):
        return self.request("DELETE", f"/vms/{self._quote(name)}")

    # -- policies ---------------------------------------------------------------
    def policies(self):
        """Loaded modules and their policies."""
        return self.request("GET", "/policies")

    def select_policy(self, vm, policy_class, policy):
        """Selects `policy` of `policy_class` (gpu_sched, memory, cpu_sched,
        prefetch) for `vm`."""
        return self.request("PUT", f"/vms/{self._quote(vm)}/policy/{self._quote(policy_class)}",
                            {"policy": policy})

    def allow_policies(self, vm, policy_class, policies=None):
        """What the VM's guest may select itself: a list of names, or None for any."""
        body = {"any": True} if policies is None else {"policies": list(policies)}
        return self.request("PUT", f"/vms/{self._quote(vm)}/allowed/{self._quote(policy_class)}",
                            body)

    def load_module(self, path):
        return self.request("POST", "/policies", {"path": os.fspath(path)})

    def unload_module(self, module, force=False):
        return self.request("DELETE", f"/policies/{self._quote(module)}" + ("?force=1" if force else ""))

    # -- metrics ---------------------------------------------------------------
    def metrics(self):
        """GET /metrics as a Metrics object."""
        return Metrics(self.request("GET", "/metrics"))
