"""A segment's boundaries as the deployed file holds them: integer where the file's tensor is integer.

In a quantized file (QOperator's QLinearConv chains, a Gather of a uint8 embedding) the value a probe reads is often
a DequantizeLinear of an integer tensor (the file's own, or the view `probes/quantized_forms.with_dequantized` adds).
A segment cut at that float tensor would start downstream of nothing: what reads the value reads the integer tensor.
So the integer tensor becomes the boundary, fed the reference's value quantized by the file's own scale and zero
point (round half to even, saturated, as QuantizeLinear does): the value the file would hold had everything before it
been exact. A boundary the file types as an integer with no such DequantizeLinear to quantize by is no boundary
(the cut walks further back): a segment never types as float what the file holds as uint8 / int8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from cp_debug.graph.model import constant_tensors

_INTEGER = {onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT16: np.int16,
            onnx.TensorProto.UINT16: np.uint16}


@dataclass(frozen=True)
class Quantize:
    """How a float boundary value becomes the integer tensor the file holds: QuantizeLinear's arithmetic."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 1

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, dtype=np.float32)
        scale, zero = self.scale.astype(np.float32), self.zero_point
        if scale.ndim == 1 and scale.size > 1:  # per channel, along `axis`
            shape = [1] * value.ndim
            shape[self.axis % value.ndim] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        info = np.iinfo(zero.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):  # a degenerate scale the file holds: as it computes
            q = np.rint(value / scale) + zero.astype(np.float32)
            return np.clip(np.nan_to_num(q), info.min, info.max).astype(zero.dtype)


def held_boundaries(model: onnx.ModelProto, types: dict, known: dict[str, str]) -> tuple[dict[str, str],
                                                                                            dict[str, Quantize]]:
    """`known` (tensor -> store key) with each known tensor a DequantizeLinear writes from an integer activation
    also known as that integer tensor (fed quantized: the second dict), and the tensors the file types as integers
    with no way to quantize dropped."""
    consts = constant_tensors(model.graph)
    writer = {t: n for n in model.graph.node for t in n.output if t}
    out = {t: k for t, k in known.items() if not _integer(types.get(t))}
    quantize: dict[str, Quantize] = {}
    for t, key in list(out.items()):
        node = writer.get(t)
        if node is None or node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        src, scale, zero = node.input[:3]
        if src in consts or src in out or scale not in consts or zero not in consts:
            continue
        zp = onnx.numpy_helper.to_array(consts[zero])
        if zp.dtype.type not in _INTEGER.values():
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        out[src] = key
        quantize[src] = Quantize(onnx.numpy_helper.to_array(consts[scale]), zp, axis)
    return out, quantize


def _integer(declared) -> bool:
    return declared is not None and declared.tensor_type.elem_type in _INTEGER
