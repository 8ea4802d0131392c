"""torchlib's op list read once a process, not once an export.

torch.onnx's dynamo exporter builds its op registry afresh on every export (`ONNXRegistry.from_torchlib`), and
onnxscript's half of it (`get_torchlib_ops`) parses the source of every torchlib function (`function_ir`) only to
read its domain: 1.1 CPU s of every dynamo export on the 2-core CPU machine, 43.8 CPU-s of the test suite (py-spy),
for a list that is the same every time in a process. `torchlib_ops_once()` puts a memo in front of that function:
the registry is still built afresh on every export (a caller's custom translation table goes into that export's own
registry), from the list of the first call. The list is made again when torchlib's own registry has changed (an op
registered since: its size is part of the memo's key). Exported graphs are byte-identical with and without it
(tests/export/test_torchlib_ops.py).

Where torch or onnxscript is laid out otherwise (another version), nothing is put in front and the exporter runs
as it is.
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


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
    return True


def _once(made):
    """`made()` remembered while torchlib's registry keeps its size; a fresh list (same entries) each call."""
    kept: dict[int, list] = {}

    def get_torchlib_ops():
        key = _registry_size()
        with _lock:
            ops = kept.get(key)
            if ops is None:
                kept.clear()
                ops = kept[key] = list(made())
        return list(ops)

    get_torchlib_ops.cpdebug_once = True
    get_torchlib_ops.__wrapped__ = made
    return get_torchlib_ops


def _registry_size() -> int:
    """How many functions torchlib's registry holds (its ops imported first, as `get_torchlib_ops` does)."""
    from onnxscript.function_libs.torch_lib import ops, registration

    del ops  # imported for its registrations
    return sum(len(f.overloads) + len(f.complex) for _, f in registration.default_registry.items())
