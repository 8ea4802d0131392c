"""NVFP4 and MXFP8 fake quantization of an activation, written in standard ONNX ops (`precision/block_formats.py` says
the arithmetic; this writes the same in a graph, bit for bit: tests/precision/test_nvfp4.py).

No runtime here runs FP4 or E8M0: ONNX Runtime has no FP4 DequantizeLinear, `trt::TRT_FP4DynamicQuantize` is
TensorRT's, and NVFP4 GEMMs exist only on SM100+. So the tensor is cut into blocks along its reduction axis
(Reshape; zero-padded to a whole block as ModelOpt pads), each block's amax taken (ReduceMax of Abs), its scale
computed and rounded (E4M3 through a float8 QuantizeLinear/DequantizeLinear pair at scale 1, saturating; E8M0 as a
power of two), and the values rounded to the element format: E2M1 with ONNX's half-to-even `Round` (steps 0.5 below
2, 1 in [2, 4), 2 from 4, saturating at 6), E4M3 through the float8 Q/DQ pair. The output is the dequantized value
in float32, what the layer's float32 arithmetic then reads.
"""

from __future__ import annotations

import math

import numpy as np

from cp_debug.precision.block_formats import E2M1_MAX, E4M3_MAX, E8M0_MAX, E8M0_MIN, MXFP8, NVFP4


class _Ops:
    """Appends nodes to a graphsurgeon graph under one name prefix; each call returns its (float32) output."""

    def __init__(self, graph, prefix: str) -> None:
        self.graph, self.prefix, self.n = graph, prefix, 0

    def const(self, value, dtype=np.float32):
        import onnx_graphsurgeon as gs

        self.n += 1
        return gs.Constant(f"{self.prefix}_c{self.n}", np.asarray(value, dtype))

    def __call__(self, op: str, *inputs, dtype=np.float32, name: str | None = None, **attrs):
        import onnx_graphsurgeon as gs

        self.n += 1
        ins = [t if isinstance(t, gs.Tensor) else self.const(t) for t in inputs]
        out = gs.Variable(name or f"{self.prefix}_{op}{self.n}", dtype=dtype)
        self.graph.nodes.append(gs.Node(op, f"{self.prefix}_{op}{self.n}", attrs, ins, [out]))
        return out

    def e4m3(self, x):
        """x rounded to FLOAT8E4M3FN (nearest even, saturating at ±448), back in float32."""
        import ml_dtypes

        one, zero = self.const(1.0), self.const(0, ml_dtypes.float8_e4m3fn)
        q = self("QuantizeLinear", x, one, zero, dtype=ml_dtypes.float8_e4m3fn, saturate=1)
        return self("DequantizeLinear", q, one, zero)


def _blocks(ops: _Ops, tensor, axis: int, k: int, block: int):
    """(blocks, shape to undo, padding): `tensor` zero-padded along `axis` (1: a Conv's channels, -1: a GEMM's last
    axis) to a multiple of `block` and reshaped so that axis 2 holds one block."""
    pad = -k % block
    x = tensor
    if pad:
        x = ops("Pad", x, ops.const([0, pad], np.int64), ops.const(0.0), ops.const([axis], np.int64))
    shape = ops("Shape", x, dtype=np.int64)
    nb = (k + pad) // block
    blocks = ops("Reshape", x, ops.const([0, nb, block, -1] if axis == 1 else [-1, nb, block], np.int64))
    return blocks, shape, pad


def _unblock(ops: _Ops, values, shape, axis: int, k: int, pad: int, name: str):
    out = ops("Reshape", values, shape, name=None if pad else name)
    if pad:
        out = ops("Slice", out, ops.const([0], np.int64), ops.const([k], np.int64), ops.const([axis], np.int64),
                  name=name)
    return out


def nvfp4_fake_quant(graph, tensor, axis: int, k: int, s2: np.float32, name: str):
    """`tensor` through NVFP4 (blocks of 16 along `axis`, `k` long; tensor scale `s2`): the float32 output `name`."""
    ops = _Ops(graph, name)
    b, shape, pad = _blocks(ops, tensor, axis, k, NVFP4.block)
    amax = ops("ReduceMax", ops("Abs", b), ops.const([2], np.int64), keepdims=1)
    raw = ops("Div", amax, ops.const(np.float32(E2M1_MAX) * s2))
    zero_block = ops("Equal", amax, 0.0, dtype=np.bool_)
    q = ops.e4m3(ops("Where", zero_block, 1.0, raw))  # ModelOpt: an all-zero block's scale is 1
    p = ops("Mul", q, ops.const(s2))
    flushed = ops("Equal", q, 0.0, dtype=np.bool_)  # the block scale underflowed: the block is 0 (p is 0)
    y = ops("Div", b, ops("Where", flushed, 1.0, p))
    values = ops("Mul", ops("Mul", _e2m1(ops, ops("Abs", y)), ops("Sign", y)), p)
    return _unblock(ops, values, shape, axis, k, pad, name)


def _e2m1(ops: _Ops, a):
    """|y| rounded to E2M1's grid, half to even, saturating at 6."""
    low = ops("Mul", ops("Round", ops("Mul", a, 2.0)), 0.5)
    mid = ops("Round", a)
    high = ops("Min", ops("Mul", ops("Round", ops("Mul", a, 0.5)), 2.0), ops.const(E2M1_MAX))
    return ops("Where", ops("Less", a, 2.0, dtype=np.bool_), low,
               ops("Where", ops("Less", a, 4.0, dtype=np.bool_), mid, high))


def mxfp8_fake_quant(graph, tensor, axis: int, k: int, name: str):
    """`tensor` through MXFP8 (blocks of 32 along `axis`, `k` long): the float32 output `name`."""
    ops = _Ops(graph, name)
    b, shape, pad = _blocks(ops, tensor, axis, k, MXFP8.block)
    amax = ops("ReduceMax", ops("Abs", b), ops.const([2], np.int64), keepdims=1)
    d = ops("Div", amax, ops.const(E4M3_MAX))
    e0 = ops("Ceil", ops("Mul", ops("Log", d), ops.const(1 / math.log(2))))  # within one of ceil(log2 d)
    s0 = ops("Pow", 2.0, e0)
    up = ops("Cast", ops("Less", s0, d, dtype=np.bool_), to=1)  # 2^e0 < d: one more
    down = ops("Cast", ops("GreaterOrEqual", ops("Mul", s0, 0.5), d, dtype=np.bool_), to=1)  # 2^(e0-1) ≥ d: one less
    e = ops("Sub", ops("Add", e0, up), down)
    e = ops("Where", ops("Equal", amax, 0.0, dtype=np.bool_), float(E8M0_MIN), e)
    scale = ops("Pow", 2.0, ops("Clip", e, ops.const(float(E8M0_MIN)), ops.const(float(E8M0_MAX))))
    values = ops("Mul", ops.e4m3(ops("Div", b, scale)), scale)
    return _unblock(ops, values, shape, axis, k, pad, name)
