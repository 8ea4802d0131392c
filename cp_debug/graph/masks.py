"""Attention masks in an ONNX graph: tensors whose values only select, compare or enter a softmax.

`transformers` fills masked attention logits with `torch.finfo(float32).min` (-3.4e38), far beyond float16's range:
in an FP16 graph the fill saturates to -inf. That is harmless where the value only reaches a softmax (exp(-inf) = 0,
as exp(-3.4e38 - max) is in float32), a comparison, or a Where's condition; it matters where it is multiplied,
normalised or reaches an output. `mask_tensors` finds the tensors of the first kind from the graph alone; whether a
run's values are only such a saturation is the caller's reading of the data (`saturated_mask`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cp_debug.half import FP16_MAX

CLAMPED_FILL = 1e4  # onnxconverter-common's max_finite_val: its -1e4 fill, logits added (half of it), weighs 0
# A mask's fill: a value at or beyond it (or ±inf) is no value a layer computes but a mask's (`transformers`'
# finfo.min, -3.4e38, as torch.onnx's dynamo exporter writes it; -inf as the TorchScript exporter's Where writes it)
MASK_FILL = 1e30
INT8_TOP = 127  # the largest level of an 8-bit pair: a scale reaches this many steps from its zero point

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# ops a mask value passes through unchanged in kind: it stays a large negative fill where it was one
_PASS = frozenset({"Add", "Sub", "Where", "Expand", "Reshape", "Unsqueeze", "Squeeze", "Cast", "Slice", "Transpose",
                   "Concat", "Identity", "Tile", "Gather", "Max", "Min", "Flatten"})
# ops whose result a saturated -inf does not change: a softmax's weight of exp(-inf) = 0, comparisons, selections
_SINKS = frozenset({"Softmax", "LogSoftmax", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "Not",
                    "ReduceMax", "ArgMax", "IsInf", "IsNaN"})


def mask_tensors(model: "onnx.ModelProto") -> frozenset[str]:
    """Tensors every use of which ends in a softmax, a comparison or a Where's condition through ops that only pass
    or select values (`_PASS`), reaching no graph output: where such a tensor saturates to -inf in float16, nothing
    downstream changes. Graph work only: callers keep the answer per graph."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i, t in enumerate(node.input):
            if t:
                consumers.setdefault(t, []).append((node, i))
    outputs = {o.name for o in model.graph.output}
    memo: dict[str, bool] = {}

    def harmless(t: str, depth: int = 0) -> bool:
        if t in memo:
            return memo[t]
        memo[t] = False  # while it is worked out, and past the depth limit: not a mask
        uses = consumers.get(t, [])
        if t in outputs or not uses or depth > 64:
            return False
        ok = all(node.op_type in _SINKS or (node.op_type == "Where" and slot == 0)
                 or (node.op_type in _PASS and all(harmless(o, depth + 1) for o in node.output if o))
                 for node, slot in uses)
        memo[t] = ok
        return ok

    return frozenset(t for n in model.graph.node for t in n.output if t and harmless(t))


def saturated_mask(ref: np.ndarray, test: np.ndarray) -> np.ndarray | None:
    """Where `test` (a float16 run) is -inf because `ref` lies at or below -65504 — the saturation of a mask's fill —
    or holds the fill as its converter clamped it (at or below -1e4, onnxconverter-common's `max_finite_val`: exp of
    it is 0 in float32 as exp(-3.4e38) is), a boolean array; None where `test` has any other non-finite value (then
    it is no mere saturation) or neither (an infinity both hold is no error: `compare/diff.py`)."""
    r, t = np.asarray(ref), np.asarray(test)
    if r.shape != t.shape or not np.issubdtype(t.dtype, np.floating):
        return None
    fill = np.isfinite(r) & (r <= -FP16_MAX)
    bad = ~np.isfinite(t) & ~(t == r)  # the reference's own -inf (a mask filled with -inf) is no saturation
    clamped = fill & np.isfinite(t) & (t <= -CLAMPED_FILL / 2) & (t != r)  # the reference's own: nothing to say
    sat = (bad & np.isneginf(t) & fill) | clamped
    return sat if sat.any() and np.array_equal(sat & bad, bad) else None


def fill_scale(scale) -> bool:
    """Whether a Q/DQ pair's finite `scale` (any of its channels) spans a range only a mask's fill reaches: 127 steps
    of it at or past MASK_FILL. Calibrated over the fill (rxnfp's dynamo export: finfo.min added to each layer's
    scores, `quantize_static`'s scale 1.33e36, the fill's range / 255), every value a layer computes rounds to its
    zero point: the pair zeroes the real values and keeps only the fill."""
    s = np.abs(np.asarray(scale, np.float64))
    return bool(np.any(np.isfinite(s) & (s * INT8_TOP >= MASK_FILL)))


def softmax_axis(nodes, tensor: str) -> int | None:
    """The axis of the Softmax(es) that alone read `tensor` among `nodes`, else None."""
    readers = [n for n in nodes if tensor in n.input]
    if not readers or any(n.op_type != "Softmax" for n in readers):
        return None
    axes = {next((a.i for a in n.attribute if a.name == "axis"), -1) for n in readers}
    return axes.pop() if len(axes) == 1 else None


def masked_fill(value: np.ndarray, lo, axis: int | None) -> np.ndarray:
    """The elements of a softmax's input `value` below `lo` that the softmax over `axis` weighs at nothing whether
    they are clipped to `lo` or not: a mask's fill (`transformers`' finfo.min, -3.4e38) an INT8 range clips to
    `lo` still gets, with every other clipped element of its row, at most FP32's epsilon of the row's largest weight
    (no FP32 sum keeps it beside that weight). A boolean array; all False where `axis` is None."""
    below = value < lo
    if axis is None or value.ndim == 0 or not below.any():
        return np.zeros(np.shape(value), bool)
    top = np.max(np.maximum(value, lo), axis=axis, keepdims=True)
    weight = np.sum(below, axis=axis, keepdims=True) * np.exp(np.minimum(np.asarray(lo, np.float64) - top, 0.0))
    return below & (weight <= float(np.finfo(np.float32).eps))
