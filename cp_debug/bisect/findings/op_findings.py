"""The op-level findings inside a root cause's segment (`segment_why.py` runs the segment; `segment_int8.py` and
`export_why.py` name nodes with `named_module`): the first op whose FP32 value leaves float16's range, the first
where the candidate makes NaN/Inf while the reference is finite, an output collapsed to zero, an addition or
subtraction that cancels (its result far smaller than its inputs, float16's rounding of them its size), a long
reduction measurably off — each named with its module, its role in the model's terms (attention logits) and, for a
reduction, how many elements it sums and how large they are (a sum over n elements of |x| <= m can reach n x m)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.half import FP16_MAX
from cp_debug.bisect.findings.no_error import excused

# ops that read big values and bring them back into range: kept with the op that wrote them
_ATTENTION_READERS = ("Softmax",)


@dataclass(frozen=True)
class OpFinding:
    node: str  # ONNX node name
    op: str  # its op type
    module: str | None  # the module it was created in (exporter scopes), None where the graph does not say
    value: float  # the reference's |x| max there (overflow), or the count of non-finite candidate elements
    kind: str  # "overflow" | "nonfinite"
    role: str = ""  # e.g. "QK^T logits" for a MatMul a Softmax reads
    ref_absmax: float | None = None  # nonfinite: the FP32 reference's |x| max there
    rel_rmse: float | None = None  # reduction: the candidate's output there against the reference's
    summed: tuple[int, float] | None = None  # a summing op: (elements per output, the largest |term| among them)
    result_rms: float | None = None  # cancel: the FP32 result's RMS (`value` is its inputs' |x| max)

    def describe(self) -> str:
        where = f"{self.module}: " if self.module else ""
        what = f"{self.role} {self.op}" if self.role else self.op
        return f"{where}{what} {self.node!r}"

    def sum_text(self) -> str:
        """Where a summing op's elements each fit float16 and their count times the largest passes 65504: the
        sum of many in-range terms is what overflows (its FP32 value, or a float16 accumulator's), said with both
        numbers; "" otherwise."""
        if self.summed is None:
            return ""
        n, m = self.summed
        if not 0 < m <= FP16_MAX or n * m <= FP16_MAX:
            return ""
        acc = ("" if self.kind == "overflow" else
               f"; the FP32 result stays within the range (|x| = {self.ref_absmax:.3g}): a float16 accumulator "
               "overflowed")
        return (f"; a sum over {n} elements of |x| <= {m:.3g} each (n x max = {n * m:.3g} > {FP16_MAX:g}): every "
                f"term fits float16, their sum does not{acc} — a mean (ReduceMean), a pre-scaled sum or FP32 "
                "accumulation keeps it in range")


# summing ops and the power of |x| each term carries (ReduceSumSquare and ReduceL2 sum squares)
_SUMMING = {"ReduceSum": 1, "ReduceMean": 1, "ReduceL1": 1, "GlobalAveragePool": 1, "ReduceSumSquare": 2,
            "ReduceL2": 2}


def summed(node, values: dict) -> tuple[int, float] | None:
    """(elements per output value, the largest |term|) of a summing op, from the reference's input and output
    shapes; None for other ops or where the values are not at hand."""
    power = _SUMMING.get(node.op_type)
    x = values.get(node.input[0]) if power and node.input else None
    y = values.get(node.output[0]) if x is not None else None
    if y is None or not y.size or x.size <= y.size or not np.issubdtype(x.dtype, np.floating):
        return None
    a = np.abs(x[np.isfinite(x)]).astype(np.float64)
    return x.size // y.size, (float(a.max()) ** power if a.size else 0.0)


def find_overflow(seg, ref: dict, st, masks: frozenset = frozenset()) -> tuple[OpFinding | None, tuple[str, ...]]:
    """The first node whose FP32 output leaves float16's range, and the nodes to keep: every node that writes
    such a value, and every node that reads one (a Softmax over overflowing logits). A value "no error" excuses
    (`no_error.py`: a mask's fill saturating to -inf, an overflow a tanh saturates) is no finding."""
    big: list = []
    for node in seg.graph.node:
        for t in node.output:
            v = ref.get(t)
            if v is not None and v.size and np.issubdtype(v.dtype, np.floating):
                a = np.abs(v[np.isfinite(v)])
                if a.size and float(a.max()) > FP16_MAX and not excused(seg.graph, t, ref, masks):
                    big.append((node, t, float(a.max())))
                    break
    if not big:
        return None, ()
    node, _, value = big[0]
    out_of_range = {t for _, t, _ in big}
    keep = [n.name for n, _, _ in big]
    keep += [n.name for n in seg.graph.node if n.name not in keep and out_of_range & set(n.input)]
    return OpFinding(node.name, node.op_type, named_module(node, st), value, "overflow", _role(seg, node),
                     summed=summed(node, ref)), tuple(dict.fromkeys(keep))


def find_nonfinite(seg, ref: dict, cand: dict, st, masks: frozenset = frozenset()) -> OpFinding | None:
    from cp_debug.graph.masks import saturated_mask

    for node in seg.graph.node:
        for t in node.output:
            r, c = ref.get(t), cand.get(t)
            if r is None or c is None or r.shape != c.shape or not np.issubdtype(c.dtype, np.floating):
                continue
            if t in masks and saturated_mask(r, c) is not None:
                continue  # a mask's fill saturated to -inf: what float16 does with it, harmless there
            bad = ~np.isfinite(c.astype(np.float32)) & np.isfinite(r)
            if bad.any():
                return OpFinding(node.name, node.op_type, named_module(node, st), float(bad.sum()), "nonfinite",
                                 _role(seg, node), float(np.abs(r[np.isfinite(r)]).max(initial=0.0)),
                                 summed=summed(node, ref))
    return None


def find_collapse(seg, ref: dict, cand: dict, st) -> OpFinding | None:
    """The first node whose candidate output is all zeros while the reference's is not (no NaN/Inf involved)."""
    for node in seg.graph.node:
        for t in node.output:
            r, c = ref.get(t), cand.get(t)
            if r is None or c is None or r.shape != c.shape or not r.size or not np.issubdtype(r.dtype, np.floating):
                continue
            big = float(np.abs(r).max())
            if big > 0 and np.isfinite(big) and not np.any(c.astype(np.float32)):
                return OpFinding(node.name, node.op_type, named_module(node, st), big, "zero", _role(seg, node))
    return None


# an Add / Sub that cancels: the candidate's result off by this rel. RMSE at least (100 float16 roundings), its inputs
# this many times larger than the result (each input's rounding, 2^-11 of it, then weighs that much more in it)
_CANCEL_REL, _CANCEL_GAIN = 100 * 2.0 ** -11, 16.0


def find_cancellation(seg, ref: dict, cand: dict, st) -> OpFinding | None:
    """The first Add / Sub whose FP32 result is far smaller than its inputs (by `_CANCEL_GAIN` or more, RMS against
    |x| max) and whose candidate result is off by `_CANCEL_REL` or more: (x + 1024) - 1024 gives back x in FP32 and
    float16's spacing of 1 at 1024 in float16 — the inputs' rounding, not the op, is the result's error."""
    for node in seg.graph.node:
        if node.op_type not in ("Add", "Sub") or len(node.input) != 2:
            continue
        r, c = ref.get(node.output[0]), cand.get(node.output[0])
        ins = [x for x in (ref.get(t) for t in node.input) if x is not None and x.size]  # a constant: not at hand
        if r is None or c is None or r.shape != c.shape or not r.size or not ins:
            continue
        if not np.issubdtype(r.dtype, np.floating) or not np.isfinite(r).all() or not np.isfinite(c).all():
            continue
        r64, c64 = r.astype(np.float64), c.astype(np.float64)
        rms = float(np.sqrt(np.mean(r64 * r64)))
        big = max(float(np.abs(x.astype(np.float64)).max(initial=0.0)) for x in ins)
        rel = float(np.sqrt(np.mean((c64 - r64) ** 2))) / rms if rms > 0 else 0.0
        if rms > 0 and big >= _CANCEL_GAIN * rms and rel >= _CANCEL_REL:
            return OpFinding(node.name, node.op_type, named_module(node, st), big, "cancel", _role(seg, node),
                             rel_rmse=rel, result_rms=rms)
    return None


_REDUCING = ("ReduceSum", "ReduceMean", "ReduceL2", "Softmax", "LayerNormalization")
_LONG_REDUCTION = 1 << 15


def find_long_reduction(seg, ref: dict, cand: dict, st) -> OpFinding | None:
    """The first reduction (a sum, a mean, a softmax's sum, a LayerNorm's statistics) over more than 2^15 elements
    of its input (the reference's shape) whose candidate output is measurably off: a relative RMSE against the
    reference beyond one float16 rounding (2^-11). A long reduction the candidate computes well is no finding. A
    Reduce op's length is read from its reference's input and output sizes (`summed`), whichever opset holds its
    axes (an attribute, or an input from opset 13 / 18 on)."""
    from onnx import helper

    from cp_debug.compare.noise import UNIT_ROUNDOFF

    for node in seg.graph.node:
        if node.op_type not in _REDUCING or not node.input or ref.get(node.input[0]) is None:
            continue
        shape = ref[node.input[0]].shape
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Softmax":
            n = shape[attrs.get("axis", -1)] if shape else 0
        elif node.op_type == "LayerNormalization":
            n = int(np.prod(shape[attrs.get("axis", -1) % len(shape):])) if shape else 0
        else:
            n = (summed(node, ref) or (0, 0.0))[0]
        if n <= _LONG_REDUCTION:
            continue
        r, c = ref.get(node.output[0]), cand.get(node.output[0])
        if r is None or c is None or r.shape != c.shape:
            continue
        r, c = r.astype(np.float64), c.astype(np.float64)
        scale = float(np.sqrt(np.mean(r * r)))
        rel = float(np.sqrt(np.mean((c - r) ** 2))) / scale if scale > 0 else 0.0
        if rel > UNIT_ROUNDOFF["fp16"]:
            return OpFinding(node.name, node.op_type, named_module(node, st), float(n), "reduction",
                             _role(seg, node), rel_rmse=rel)
    return None


def _role(seg, node) -> str:
    """What the op is in the model's terms, where its neighbours say: a MatMul whose value a Softmax reads (through
    a scaling Div / Mul, a mask Add) is the attention logits."""
    if node.op_type in ("MatMul", "Gemm", "Einsum"):
        at, steps = node, 0
        while steps < 4:
            readers = [n for n in seg.graph.node if set(at.output) & set(n.input)]
            if any(n.op_type in _ATTENTION_READERS for n in readers):
                return "attention logits (QK^T)"
            if len(readers) != 1 or readers[0].op_type not in ("Div", "Mul", "Add", "Where", "Cast"):
                break
            at, steps = readers[0], steps + 1
    if node.op_type == "Softmax":
        return "attention"
    return ""


@dataclass(frozen=True)
class NamedStage:
    """A stage with its probe map read backwards (tensor -> probe): a node whose output is a probe's tensor is
    named by that probe (a conv with its BatchNorm folded in holds the BN's value, and is the BN's row)."""

    stage: object
    probes: dict

    @classmethod
    def of(cls, stage) -> "NamedStage":
        """`stage` with its probe map read backwards (none where it has no map)."""
        pm = stage.probe_map()
        return cls(stage, {t: p for p, t in (pm.tensors.items() if pm is not None else ())})

    @property
    def module(self):
        return self.stage.module

    @property
    def has_module(self) -> bool:
        return self.stage.has_module

    def trace(self):
        return self.stage.trace()


def named_module(node, st) -> str | None:
    """The module a node was created in: the probe whose tensor it writes, else the dynamo exporter's scope
    metadata, else TorchScript's node name."""
    from cp_debug.probes.naming import node_scope

    named = next((st.probes[t] for t in node.output if t in getattr(st, "probes", {})), None)
    if named is not None:
        return named

    trace = st.trace() if st.has_module else None
    names = set(trace.call_counts) if trace is not None else set()
    return node_scope(node, names)
