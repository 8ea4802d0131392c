"""The precision an ONNX file carries itself: Q/DQ (or integer ops), float16 weights or casts, or neither.

Where a file carries its precision, a backend runs it as it is (a deployed FP16 or Q/DQ file) and TensorRT builds it
strongly typed; the `SPEC@DIR` candidates' tolerances follow it too (`bisect/deployed.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx

INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                      "MatMulInteger"})


def file_precision(model: "onnx.ModelProto") -> str:
    """"int8" for a Q/DQ (or integer-op) graph, "fp16" where weights or casts are float16, else "fp32"."""
    from cp_debug.precision.half_storage import holds_half_constants

    if any(n.op_type in INT8_OPS for n in model.graph.node):
        return "int8"
    return "fp16" if holds_half_constants(model) else "fp32"
