"""The Q/DQ structure check of an ONNX file for TensorRT's explicit quantization (this module exports nothing).

The Q/DQ files themselves come from torch's own fake-quant ops: torch.fake_quantize_per_tensor_affine /
_per_channel_affine export (opset >= 13) as QuantizeLinear -> DequantizeLinear with int8 zero points 0 and
scale = amax / 127: per-tensor for inputs, per-axis (axis 0 for Conv, 1 for ConvTranspose) for weights. Writing
the two AWML stage files is `recipes/centerpoint/ptq/qdq_files.export_qdq` (it calls the recipe's exporter);
`check_qdq` reads a file back and says, conv by conv, whether both its data input and its weight come out of a
DequantizeLinear (quantized) or not. TensorRT is not run here: the form is the one its explicit-quantization parser
documents (symmetric int8, zero point 0, positive scales, per-channel only on the weight's output-channel axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class QdqSummary:
    """One Q/DQ ONNX file: Q and DQ node counts, convs with quantized input and weight, convs left float."""

    path: Path
    quantize_nodes: int
    dequantize_nodes: int
    quantized_convs: tuple[str, ...]
    float_convs: tuple[str, ...]
    per_axis_weights: int


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def check_qdq(path: str | Path) -> QdqSummary:
    """onnx.checker on `path`, then the Q/DQ structure; raises BadInputError where TensorRT would refuse it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    value = lambda name: inits.get(name, consts.get(name))  # noqa: E731
    prod = _producers(g)
    q = [n for n in g.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in g.node if n.op_type == "DequantizeLinear"]
    per_axis = 0
    for n in q + dq:
        scale = value(n.input[1])
        zp = value(n.input[2]) if len(n.input) > 2 else None
        if scale is None or (zp is None and len(n.input) > 2):
            raise BadInputError(f"{path}: {n.name} has a non-constant scale or zero point; TensorRT needs constants")
        if not np.all(scale > 0):
            raise BadInputError(f"{path}: {n.name} has a scale <= 0")
        if zp is not None and (zp.dtype != np.int8 or np.any(zp != 0)):
            raise BadInputError(f"{path}: {n.name} zero point is {zp.dtype} {zp.ravel()[:3]}; TensorRT needs int8 0")
        per_axis += int(n.op_type == "DequantizeLinear" and scale.size > 1)
    quantized, floating = [], []
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose"):
            continue
        srcs = [prod.get(i) for i in n.input[:2]]
        ok = all(s is not None and s.op_type == "DequantizeLinear" for s in srcs)
        (quantized if ok else floating).append(n.name)
    return QdqSummary(Path(path), len(q), len(dq), tuple(quantized), tuple(floating), per_axis)
