"""ONNX Runtime's own operators in the ONNX domain: what the ONNX checker refuses and ONNX Runtime runs.

ONNX Runtime registers a few contrib operators in the default domain rather than `com.microsoft` —
`SimplifiedLayerNormalization` (the RMSNorm every LLM file of ONNX Runtime GenAI's model builder holds) above all —
so `onnx.checker` says "No Op registered for SimplifiedLayerNormalization with domain_version of 22" of files ORT
loads and runs; ORT's `MatMulNBitsQuantizer` writes `com.microsoft` nodes without that domain's opset import ("No
opset import for domain 'com.microsoft'"), which ORT runs too. `checked_as_ort(model, check)` runs the checker on
the model with those nodes tagged `com.microsoft` and the import there for the check (unknown operators of another
domain are not the checker's business), the model left as it was.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Callable

from cp_debug.graph.bodies import all_nodes

if TYPE_CHECKING:  # pragma: no cover
    import onnx

_UNREGISTERED = re.compile(r"No Op registered for (\w+) with domain_version")
_NO_IMPORT = re.compile(r"No opset import for domain '(com\.microsoft)'")
_CHECK_DOMAIN = "com.microsoft"


@functools.lru_cache(maxsize=1)
def ort_default_domain_ops() -> frozenset[str]:
    """The operators ONNX Runtime registers in the ONNX domain that ONNX itself does not define."""
    import onnx.defs

    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema
    except ImportError:  # an ONNX Runtime built without its schemas: the one the builder's files need, named
        return frozenset({"SimplifiedLayerNormalization"})
    onnx_ops = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
    return frozenset(s.name for s in get_all_operator_schema() if s.domain in ("", "ai.onnx")) - onnx_ops


def ort_only_op(err: Exception) -> str | None:
    """What a checker's error refuses where ONNX Runtime runs it: one of ORT's own operators in the ONNX domain, or
    `com.microsoft` used without its opset import (ORT's `MatMulNBitsQuantizer` writes such files); else None."""
    m = _UNREGISTERED.search(str(err))
    if m and m.group(1) in ort_default_domain_ops():
        return m.group(1)
    m = _NO_IMPORT.search(str(err))
    return m.group(1) if m else None


def checked_as_ort(model: "onnx.ModelProto", check: "Callable[[onnx.ModelProto], None]") -> None:
    """`check(model)` with ONNX Runtime's own default-domain nodes tagged `com.microsoft` for the time of the check
    (an opset import for it added likewise); the model is handed back as it was, whatever the check raises."""
    ops = ort_default_domain_ops()
    moved = [n for n in all_nodes(model.graph) if n.domain in ("", "ai.onnx") and n.op_type in ops]
    added = None
    if not any(o.domain == _CHECK_DOMAIN for o in model.opset_import):
        added = model.opset_import.add(domain=_CHECK_DOMAIN, version=1)
    olds = [n.domain for n in moved]
    for n in moved:
        n.domain = _CHECK_DOMAIN
    try:
        check(model)
    finally:
        for n, old in zip(moved, olds):
            n.domain = old
        if added is not None:
            model.opset_import.remove(added)


