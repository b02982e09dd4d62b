#!/usr/bin/env python3
"""Probes what this python3's torch offers a PrivateUse1 backend, for the
design of the malv torch device (docs/torch.md). Prints one JSON object.

    /usr/bin/python3 python/tools/probe_torch.py [--ops]   # --ops: list the ops per group

Counted over every aten schema torch knows (torch._C._jit_get_all_schemas()):
which reach a backend at all (no CompositeImplicitAutograd kernel: those
decompose above the backend), which of those have a Meta kernel (output
shapes computable in the guest), which are views, in-place or out=
variants, and which decompose differently on PrivateUse1 than on the CPU
(a composite kernel runs for PrivateUse1 while the CPU has its own), and
which reach a boxed fallback registered on PrivateUse1 at all.
It compiles nothing and touches no device.
"""

import collections
import json
import sys

import torch


def has(name, key):
    """A kernel registered for `key` itself."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
    except RuntimeError:
        return False


def computed(name, key):
    """What the dispatch table runs for `key` (alias keys such as
    CompositeExplicitAutograd included)."""
    try:
        return torch._C._dispatch_has_computed_kernel_for_dispatch_key(name, key)
    except RuntimeError:
        return False


def probe_op_db():
    """The OpInfo database's size: Debian's torch ships it, but it imports
    expecttest, which Debian lacks; a stand-in with TestCase and ACCEPT is
    enough."""
    import types
    import unittest
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.ACCEPT = False
            stub.TestCase = unittest.TestCase
            sys.modules["expecttest"] = stub
    try:
        from torch.testing._internal.common_methods_invocations import op_db
    except Exception as e:  # noqa: BLE001  (a probe reports what fails)
        return {"op_db": f"not importable: {e}"}
    f32 = [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]
    return {"op_db": len(op_db), "op_db_float32_on_cpu": len(f32)}


def main():
    list_ops = "--ops" in sys.argv
    out = collections.OrderedDict()
    out["torch_version"] = torch.__version__
    out["device_string"] = torch.device("privateuseone").type
    out["rename_privateuse1_backend"] = hasattr(torch.utils, "rename_privateuse1_backend")
    out["python_library_methods"] = [m for m in dir(torch.library.Library) if not m.startswith("_")]
    try:
        torch.empty(1, device="privateuseone")
        out["empty_without_a_backend"] = "works"
    except (NotImplementedError, RuntimeError) as e:
        out["empty_without_a_backend"] = str(e).splitlines()[0][:160]
    out["privateuse1_fallback_registered"] = torch._C._dispatch_has_backend_fallback(
        torch._C.DispatchKey.PrivateUse1)

    groups = collections.defaultdict(list)
    seen = set()
    for schema in torch._C._jit_get_all_schemas():
        if not schema.name.startswith("aten::"):
            continue
        name = schema.name + (f".{schema.overload_name}" if schema.overload_name else "")
        if name in seen:
            continue
        seen.add(name)
        groups["aten_ops"].append(name)
        if has(name, "CompositeImplicitAutograd"):
            groups["decompose_above_the_backend"].append(name)
            continue
        groups["reach_the_backend"].append(name)
        if computed(name, "Meta"):
            groups["reach_with_meta"].append(name)
        else:
            groups["reach_without_meta"].append(name)
        if computed(name, "PrivateUse1"):
            # A composite kernel already runs for PrivateUse1: it decomposes
            # there, and the fallback never sees the op itself.
            groups["decompose_on_privateuse1"].append(name)
            if has(name, "CPU"):
                # ... while the CPU has a kernel of its own: results may
                # differ from the CPU's in the last bits.
                groups["decompose_differently_than_cpu"].append(name)
        else:
            groups["reach_the_fallback"].append(name)
        aliases = [a for a in schema.arguments if a.alias_info is not None]
        writes = [a for a in aliases if a.alias_info.is_write]
        returns_alias = any(r.alias_info is not None for r in schema.returns)
        if returns_alias and not writes:
            groups["views"].append(name)
        if schema.overload_name.startswith("out") or any(a.kwarg_only and a.alias_info is not None
                                                          and a.alias_info.is_write
                                                          for a in schema.arguments):
            groups["out_variants"].append(name)
        elif writes:
            groups["in_place"].append(name)
        if name.startswith(("aten::native_batch_norm", "aten::_native_batch_norm_legit")):
            groups["batch_norm"].append(
                f"{name}: {schema}")
    for key, names in groups.items():
        out[key] = len(names) if not list_ops or key == "aten_ops" else sorted(names)
    out["batch_norm_schemas"] = groups["batch_norm"]
    out["cpu_threads"] = torch.get_num_threads()
    out.update(probe_op_db())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
