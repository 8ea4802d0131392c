"""torchlib's op list read once a process, not once an export.

torch.onnx's dynamo exporter builds its op registry afresh on every export (`ONNXRegistry.from_torchlib`), and
onnxscript's half of it (`get_torchlib_ops`) parses the source of every torchlib function (`function_ir`) only to
read its domain: 1.1 CPU s of every dynamo export on the 2-core CPU machine, 43.8 CPU-s of the test suite (py-spy),
for a list that is the same every time in a process. `torchlib_ops_once()` puts a memo in front of that function:
the registry is still built afresh on every export (a caller's custom translation table goes into that export's own
registry), from the list of the first call. The list is made again when torchlib's own registry has changed (an op
registered since: its size is part of the memo's key). Exported graphs are byte-identical with and without it
(tests/export/test_torchlib_ops.py).

The registry itself is the second half: `ONNXRegistry.from_torchlib` makes an `OnnxDecompMeta` per op, each
inferring its ONNX signature from the function (0.25 CPU s an export after the first, 16.8 CPU-s of the suite with
the list's memo in place). `from_torchlib` is remembered per opset, torchlib's registry and the operators torch
knows (a library imported since, torchvision say, adds operators the registry then holds): each call gets a registry
of its own, its `functions` lists copies (a custom translation table registers into that export's registry alone),
the metas in them shared (nothing changes them after they are made).

Where torch or onnxscript is laid out otherwise (another version), nothing is put in front and the exporter runs
as it is.
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()
_registry_lock = threading.Lock()  # apart from _lock: building a registry reads the list through its memo


def torchlib_ops_once() -> bool:
    """Put the memo in front of onnxscript's `get_torchlib_ops` as torch.onnx reaches it (once a process); True
    where it is in place."""
    try:
        from torch.onnx._internal.exporter import _registration

        apis = sys.modules[_registration.onnxscript_apis.__name__]  # the lazy module's target, imported by now
        current = apis.get_torchlib_ops
    except (ImportError, AttributeError, KeyError):
        return False
    if getattr(current, "cpdebug_once", False):
        return True
    with _lock:
        if not getattr(apis.get_torchlib_ops, "cpdebug_once", False):
            apis.get_torchlib_ops = _once(current)
        registry = _registration.ONNXRegistry
        made = registry.__dict__.get("from_torchlib")
        if isinstance(made, classmethod) and _plain_registry(registry) and \
                not getattr(made.__func__, "cpdebug_once", False):
            registry.from_torchlib = classmethod(_registry_once(made.__func__))
    return True


def _plain_registry(registry) -> bool:
    """An ONNXRegistry holds what this copies and nothing else: its opset and the `functions` dict of lists."""
    try:
        return set(vars(registry())) == {"_opset_version", "functions"}
    except Exception:  # noqa: BLE001 - another layout: left as it is
        return False


def _registry_once(made):
    """`made(cls, ...)` (ONNXRegistry.from_torchlib) remembered per arguments while torchlib's registry keeps its
    size; every call a registry of its own (fresh `functions` lists of the same metas)."""
    kept: dict[tuple, object] = {}

    def from_torchlib(cls, *args, **kwargs):
        try:
            key = (cls, args, tuple(sorted(kwargs.items())), _registry_size(), _torch_ops())
        except Exception:  # noqa: BLE001 - torch laid out otherwise: built afresh, as without the memo
            return made(cls, *args, **kwargs)
        built = _newest(kept, key, _registry_lock, lambda: made(cls, *args, **kwargs))
        fresh = cls()
        fresh._opset_version = built._opset_version
        fresh.functions = {target: list(metas) for target, metas in built.functions.items()}
        return fresh

    from_torchlib.cpdebug_once = True
    from_torchlib.__wrapped__ = made
    return from_torchlib


def _torch_ops() -> tuple[frozenset, int]:
    """What a registry is made of besides torchlib's list: the operators torch knows now (an entry whose op does not
    exist yet is left out: torchvision's, until torchvision is imported) and torch's own torchlib entries."""
    import torch
    from torch.onnx._internal.exporter._torchlib import _torchlib_registry, ops

    del ops  # imported for its registrations, as the registry's build does
    return frozenset(torch._C._dispatch_get_all_op_names()), len(_torchlib_registry._registry)


def _once(made):
    """`made()` remembered while torchlib's registry keeps its size; a fresh list (same entries) each call."""
    kept: dict[int, list] = {}

    def get_torchlib_ops():
        return list(_newest(kept, _registry_size(), _lock, lambda: list(made())))

    get_torchlib_ops.cpdebug_once = True
    get_torchlib_ops.__wrapped__ = made
    return get_torchlib_ops


def _newest(kept: dict, key, lock: threading.Lock, build):
    """`kept[key]`, made by `build()` where missing; `kept` holds the newest key's result alone."""
    with lock:
        if key not in kept:
            kept.clear()
            kept[key] = build()
        return kept[key]


def _registry_size() -> int:
    """How many functions torchlib's registry holds (its ops imported first, as `get_torchlib_ops` does)."""
    from onnxscript.function_libs.torch_lib import ops, registration

    del ops  # imported for its registrations
    return sum(len(f.overloads) + len(f.complex) for _, f in registration.default_registry.items())
