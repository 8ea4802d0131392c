"""A probe's element type beside its shape, where a module's output is matched to an ONNX tensor (`naming.py`).

Probes are matched to the tensors leaving a module's ONNX scope by shape; a tuple whose members share a shape but
not a kind of value — LFM2-MoE's router returns its routing weights (float) and the experts it chose (int64), both
[tokens, top-k] — was left unmapped ("which one holds this output is not known"). The trace records each probe's
element type (`ModuleTrace.dtypes`) and a float output is never matched to a tensor that cannot hold one, nor an
integer output to a float tensor:
- a float probe never maps onto an INT64, UINT64 or BOOL tensor; the narrower integers stay open to it (a QOperator
  file's INT8/UINT8 tensors hold a quantized float value, read through `foreign.py`'s float view; INT32 is a
  MatMulInteger's accumulator);
- an integer or bool probe never maps onto a floating tensor (FLOAT, FLOAT16, BFLOAT16, DOUBLE, the FP8 types);
- torch's quantized and complex types, a probe with no recorded type (a trace cached before it held them) and a
  tensor whose element type inference left open are not judged: they fit as before.
"""

from __future__ import annotations

import onnx

from cp_debug.graph.model import inferred_graph

_T = onnx.TensorProto
_FLOATING = frozenset({_T.FLOAT, _T.FLOAT16, _T.BFLOAT16, _T.DOUBLE, _T.FLOAT8E4M3FN, _T.FLOAT8E4M3FNUZ,
                       _T.FLOAT8E5M2, _T.FLOAT8E5M2FNUZ})
_NO_FLOAT_VALUE = frozenset({_T.INT64, _T.UINT64, _T.BOOL})
_TORCH_INTEGER = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


def graph_types(model: onnx.ModelProto, types: dict[str, onnx.TypeProto] | None = None) -> dict[str, onnx.TypeProto]:
    """`types` where the caller has them (`graph.plan.tensor_types`), else each tensor's type as inference gives it
    (best effort: where inference cannot run, the declared types)."""
    if types is not None:
        return types
    g = inferred_graph(model)
    return {vi.name: vi.type for vi in list(g.value_info) + list(g.output) + list(g.input)}


def dtype_fits(elem_type: int | None, dtype: str | None) -> bool:
    """Whether an ONNX tensor of element type `elem_type` may hold a torch output of element type `dtype` (the module
    docstring); True where either is not known."""
    if not elem_type or dtype is None:
        return True
    if dtype.startswith(("float", "bfloat")):
        return elem_type not in _NO_FLOAT_VALUE
    if dtype in _TORCH_INTEGER:
        return elem_type not in _FLOATING
    return True
