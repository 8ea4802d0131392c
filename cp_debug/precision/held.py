"""The precision an ONNX file carries itself: Q/DQ (or integer ops), float16 weights or casts, or neither.

Q/DQ pairs say their format by their zero point's type: int8/uint8 (onnxruntime.quantization's `quantize_static`,
ModelOpt's INT8) or float8 e4m3fn / e5m2 (opset 19+: ModelOpt's FP8, TensorRT's FP8 Q/DQ): "fp8" where any
QuantizeLinear writes float8 — its 3 mantissa bits are not INT8's 256 levels, never judged by INT8's budget. A graph
that `precision/block_quant.py` wrote says the format it emulates ("nvfp4", "mxfp8") in its metadata: its float8
Q/DQ pairs round block scales, not values at a per-tensor scale.

Where a file carries its precision, a backend runs it as it is (a deployed FP16 or Q/DQ file) and TensorRT builds it
strongly typed; the `SPEC@DIR` candidates' tolerances follow it too (`bisect/subjects/deployed.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx

INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                      "MatMulInteger"})


QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# the precisions whose graphs hold float8 Q/DQ: ONNX Runtime runs them at `ort_precision.FP8_ORT_OPT_LEVEL`
FLOAT8_GRAPHS = ("fp8", "nvfp4", "mxfp8")
# a graph emulating NVFP4 / MXFP8 (`precision/block_quant.py` writes it) says its format under this metadata key
EMULATED_KEY = "cp_debug.emulated_precision"


def emulated_format(model: "onnx.ModelProto") -> str | None:
    """The format a graph written here emulates ("nvfp4", "mxfp8"), None for any other graph."""
    return next((p.value for p in model.metadata_props if p.key == EMULATED_KEY), None)


def file_precision(model: "onnx.ModelProto") -> str:
    """"nvfp4" / "mxfp8" for a graph emulating that format here, "fp8" for float8 Q/DQ, "int8" for a Q/DQ (or
    integer-op) graph, "int4w" / "int8w" (+ "-a8": INT8 activations) for MatMulNBits weights (`nbits.py`; "int4w"
    too for 4-bit DequantizeLinear weights where nothing else is quantized), "fp16"
    where weights or casts are float16, else "fp32"."""
    from cp_debug.precision.half_storage import holds_half_constants
    from cp_debug.precision.nbits import nbits_precision

    if (emulated := emulated_format(model)) is not None:
        return emulated
    if any(n.op_type in INT8_OPS for n in model.graph.node) and not weight_only_dq(model):
        return "fp8" if _float8_qdq(model) else "int8"
    if (weight_only := nbits_precision(model)) is not None:  # MatMulNBits, or 4-bit DequantizeLinear weights alone
        return weight_only
    return "fp16" if holds_half_constants(model) else "fp32"


def weight_only_dq(model: "onnx.ModelProto") -> bool:
    """Whether every quantized op of the file is a DequantizeLinear of a 4-bit weight (`nbits.dq_weight_nodes`: the
    QDQ format of `MatMulNBitsQuantizer`): no activation quantized, weight-only."""
    from cp_debug.precision.nbits import FOUR_BITS

    inits = {i.name: i.data_type for i in model.graph.initializer}
    return all(n.op_type not in INT8_OPS or (n.op_type == "DequantizeLinear" and inits.get(n.input[0]) in FOUR_BITS)
               for n in model.graph.node)


def qdq_count(model: "onnx.ModelProto") -> int:
    """How many QuantizeLinear / DequantizeLinear nodes `model` holds."""
    return sum(1 for n in model.graph.node if n.op_type in QDQ_OPS)


def _float8_qdq(model: "onnx.ModelProto") -> bool:
    """Whether a QuantizeLinear's zero point (its output type) is a float8 type."""
    import onnx

    float8 = {getattr(onnx.TensorProto, t) for t in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ")
              if hasattr(onnx.TensorProto, t)}
    types = {i.name: i.data_type for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            types[n.output[0]] = n.attribute[0].t.data_type
    return any(n.op_type == "QuantizeLinear" and len(n.input) > 2 and types.get(n.input[2]) in float8
               for n in model.graph.node) or any(t in float8 for t in types.values())
