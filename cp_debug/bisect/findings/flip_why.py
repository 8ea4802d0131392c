"""A decision that flips is a decision, not a layer's rounding (issue 84, item 2).

RT-DETR in FP16 swaps one of its 20 queries at the encoder's TopK: the selection's own table went from a relative
error of 0.016 to 0.42 (×26.6), and the root cause was named at an upstream Conv, "FP16 rounding introduced by this
layer; keep it in FP32". What the data says is another thing: where the first divergent probe's segment holds a TopK,
ArgMax or ArgMin, computes well on the reference's own boundary values (its local error within the precision) and
badly on the candidate's (its propagated error beyond), the error that flowed in was rounding-sized and the decision
turned it into a different choice. The reference's values at the decision say whether that is what a precision
does: the margin between the last chosen and the first left out (the top two for ArgMax) against the candidate
format's rounding step at those values (float16's spacing there; bfloat16's). A margin inside one step is a near tie
the format cannot keep: the root cause is the decision, named with its margin and step, and no layer kept in FP32
cures it — compare that output as a set, or widen the margin. A margin wider than a step is no finding here.

A softmax whose logits are huge is a decision too (issue 84's attention with QK^T at 2e8): its output is one-hot in a
row, and where the top two logits lie within the format's rounding step at their magnitude (2^-10 of the binade for
float16, beyond its range as well: a MatMul kept in FP32 still reads float16-rounded q and k), rounding picks the
other key and the row hands on another token's value. It is read whatever the segment's own error (its tie flips
inside the segment too, and overflows there where the logits leave the range): keeping the MatMul in FP32 cures this
input or not by chance, and no set cures every input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.ranking import beyond_locally
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.graph.masks import MASK_FILL  # a logit at or below -MASK_FILL is a mask's fill, no value weighed
from cp_debug.half import FP16_MAX

DECISION_OPS = ("TopK", "ArgMax", "ArgMin")
SATURATED = 0.99  # a softmax row is a hard choice (one-hot) where its top weight reaches this


@dataclass(frozen=True)
class Flip:
    """A decision inside the first divergent probe's segment whose reference margin is within a rounding step."""

    probe: str  # the probe whose segment holds the decision
    node: str
    op: str
    module: str | None
    chosen: int  # how many it chooses per row (TopK's k; 1 for ArgMax / ArgMin)
    ties: int  # rows whose margin is within a step
    rows: int
    gap: float  # the smallest margin
    step: float  # the candidate format's rounding step at the values there
    precision: str
    reach: float | None = None  # Softmax: the largest finite |logit| it reads
    error: float = 0.0  # the candidate's own error at the values it reads, where its segment's rounding flips it

    def text(self) -> str:
        where = f"{self.module}: " if self.module else ""
        if self.op == "Softmax":
            over = f", beyond float16's {FP16_MAX:g} too" if self.reach and self.reach > FP16_MAX else ""
            return (f"saturated softmax flip at {where}Softmax {self.node!r}: the reference's output is one-hot (a "
                    f"hard choice) in {self.ties} of {self.rows} row(s) whose top two logits lie {self.gap:.3g} apart, "
                    f"within {self.precision}'s rounding step at their magnitude ({self.step:.3g}; the logits reach "
                    f"|x| = {self.reach:.3g}{over}): rounding the logits' inputs picks the other one, so the row "
                    "hands on another value — not a layer's rounding (keeping layers in FP32 cures an input only by "
                    "chance, none every input); soften the logits (scale q or k down, a temperature, normalise them) "
                    "or compare this output as a set")
        what = f"top {self.chosen}" if self.op == "TopK" else "the top one"
        return (f"decision flip at {where}{self.op} {self.node!r}: the reference's margin between {what} and the "
                f"next is {self.gap:.3g} in {self.ties} of {self.rows} row(s), {self._within()}: a near tie the format "
                f"cannot keep, so the choice flips and everything "
                "after it differs — not a layer's rounding (keeping layers in FP32 does not cure it); compare this "
                "output as a set, or widen the margin")


    def _within(self) -> str:
        if self.error > self.step:
            return (f"within what the candidate's own rounding moved these values by ({self.error:.3g}; "
                    f"{self.precision}'s step there {self.step:.3g})")
        return f"within {self.precision}'s rounding step there ({self.step:.3g})"


def decision_flip(run: RunState, state: CandidateState, probe: str | None) -> Flip | None:
    """The flip in `probe`'s segment (see the module docstring), or None."""
    from cp_debug.bisect.findings.op_findings import named_module
    from cp_debug.bisect.findings.segment_why import root_segment, run_segment

    precision = state.judged_at or state.spec.precision
    r = state.results.get(probe) if probe else None
    if precision not in ("fp16", "bf16") or r is None or r.local is None:
        return None
    own = beyond_locally(r)  # the segment's own rounding flips it: read where its own run chose otherwise
    ops = (*DECISION_OPS, "Softmax")
    i = run.probes[probe].stage
    if not any(n.op_type in ops for n in run.stage_of(state.label, i).onnx().graph.node):
        return None  # no decision in the stage: no segment cut (in lockstep, a reference run) to look for one
    rs = root_segment(run, state, i, probe, whole=own)  # its own error: as it ran, its children inside
    if rs is None:
        return None
    nodes = [n for n in rs.model.graph.node if n.op_type in ops and n.input]
    if not nodes:
        return None
    # where the segment's own rounding flips a choice, its run as the candidate runs it beside the reference's, once:
    # the indices each decision takes and the values it reads, on both sides
    choices = [n for n in nodes if n.op_type != "Softmax"] if own and rs.spec.can(Capability.ORT_SESSIONS) else []
    read = [x for n in choices for x in (_indices(n), n.input[0])]
    ref = run_segment(run, "ort", rs.model, rs.feed, list(dict.fromkeys([*(n.input[0] for n in nodes), *read])))
    ref = {**rs.feed, **ref.values}
    got = run_segment(run, str(rs.spec), rs.model, rs.feed, list(dict.fromkeys(read)), spec=rs.spec).values \
        if choices else {}
    for node in nodes:
        x = ref.get(node.input[0])
        if x is None or not np.issubdtype(x.dtype, np.floating) or x.size < 2:
            continue
        error = 0.0  # the segment's own rounding flips it: the margin read against what it moved the values by
        if own and node.op_type != "Softmax":
            error = chose_otherwise(node, ref, got, chosen(node, rs.model)) if node in choices else None
            if error is None:
                continue
        k = chosen(node, rs.model)
        found = (softmax_tie(node, x, opset(rs.model), precision) if node.op_type == "Softmax"
                 else margin(node, x, k, precision, error)
                 or (order_margin(node, x, k, precision, error) if own else None))
        if found is not None:
            ties, rows, gap, step, k = found
            # the logits it reads, less a mask's fill (a causal mask's finfo.min: -3.4e38 is no logit)
            kept = x[np.isfinite(x) & (x > -MASK_FILL)] if node.op_type == "Softmax" else None
            reach = float(np.abs(kept).max(initial=0.0)) if kept is not None else None
            return Flip(probe, node.name, node.op_type, named_module(node, rs.named), k, ties, rows, gap, step,
                        precision, reach, error)
    return None


def _indices(node) -> str:
    """The output holding the indices a decision takes (a TopK's second, an ArgMax's only)."""
    return node.output[1] if node.op_type == "TopK" and len(node.output) > 1 else node.output[0]


def chose_otherwise(node, ref: dict, got: dict, k: int | None) -> float | None:
    """The segment run as the candidate runs it (`got`), on the reference's boundary values, takes other indices at
    `node` (a TopK's, an ArgMax's) than its FP32 run (`ref`): the segment's own rounding flips the decision (its local
    error is the flip's). Returns the candidate's own error at the values the decision reads (the largest
    |difference| among the reference's chosen members and the next: what its rounding moved them by), None where it
    chose the same (or a candidate ONNX Runtime does not run gave no values)."""
    t = _indices(node)
    a, b = ref.get(t), got.get(t)
    if not t or a is None or b is None or a.shape != b.shape or not bool((a != b).any()):
        return None
    x, y = ref.get(node.input[0]), got.get(node.input[0])
    if x is None or y is None or x.shape != y.shape:
        return 0.0
    return _error_at_cut(node, np.asarray(x, np.float64), np.asarray(y, np.float64), k)


def _error_at_cut(node, x: np.ndarray, y: np.ndarray, k: int | None) -> float:
    """The largest |y - x| among each row's reference top k + 1 (the members and the first left out)."""
    attrs = {a.name: a.i for a in node.attribute}
    axis = attrs.get("axis", -1 if node.op_type == "TopK" else 0)
    largest = attrs.get("largest", 1) if node.op_type == "TopK" else int(node.op_type == "ArgMax")
    xs, ys = (np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis]) for a in (x, y))
    n = min((k or 1) + 1, xs.shape[1])
    at = np.argsort(-xs if largest else xs, axis=1, kind="stable")[:, :n]
    d = np.abs(np.take_along_axis(ys, at, 1) - np.take_along_axis(xs, at, 1))
    return float(d[np.isfinite(d)].max(initial=0.0))


def chosen(node, model) -> int | None:
    """TopK's k where the graph holds it as a constant; 1 for ArgMax / ArgMin."""
    from onnx import numpy_helper

    if node.op_type != "TopK":
        return 1
    if len(node.input) < 2:  # opset < 10: an attribute
        return next((a.i for a in node.attribute if a.name == "k"), None)
    for t in model.graph.initializer:
        if t.name == node.input[1]:
            return int(numpy_helper.to_array(t).reshape(-1)[0])
    for n in model.graph.node:
        if n.op_type == "Constant" and node.input[1] in n.output:
            return int(numpy_helper.to_array(n.attribute[0].t).reshape(-1)[0])
    return None


def margin(node, x: np.ndarray, k: int | None, precision: str, error: float = 0.0
           ) -> tuple[int, int, float, float, int] | None:
    """(rows within a step, rows, the smallest margin, the step there, k) where some row's margin at the cut is
    within the format's rounding step (or `error`, the candidate's own error at these values, where larger); None
    otherwise."""
    attrs = {a.name: a.i for a in node.attribute}
    axis = attrs.get("axis", -1 if node.op_type == "TopK" else 0)
    largest = attrs.get("largest", 1) if node.op_type == "TopK" else int(node.op_type == "ArgMax")
    v = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, x.shape[axis])
    if k is None or not 0 < k < v.shape[1]:
        return None
    v = -np.sort(-v, axis=1) if largest else np.sort(v, axis=1)
    last, first_out = v[:, k - 1], v[:, k]
    gap = np.abs(last - first_out)
    step = rounding_step(np.maximum(np.abs(last), np.abs(first_out)), precision)
    tie = gap <= np.maximum(step, error)
    if not tie.any():
        return None
    return int(tie.sum()), int(v.shape[0]), float(gap[tie].min()), float(step[tie].max()), k


def order_margin(node, x: np.ndarray, k: int | None, precision: str, error: float = 0.0
                 ) -> tuple[int, int, float, float, int] | None:
    """A sorted TopK's near ties among its own k (the order it hands on, not the set): (rows where two neighbours
    of the top k lie within the format's rounding step, rows, the smallest such gap, the step there, k); None
    where there are none, or the TopK is unsorted."""
    attrs = {a.name: a.i for a in node.attribute}
    if node.op_type != "TopK" or not attrs.get("sorted", 1) or k is None or k < 2:
        return None
    axis = attrs.get("axis", -1)
    v = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, x.shape[axis])
    if k > v.shape[1]:
        return None
    v = (-np.sort(-v, axis=1) if attrs.get("largest", 1) else np.sort(v, axis=1))[:, :k]
    gap = np.abs(v[:, :-1] - v[:, 1:])
    step = rounding_step(np.maximum(np.abs(v[:, :-1]), np.abs(v[:, 1:])), precision)
    tie = gap <= np.maximum(step, error)
    if not tie.any():
        return None
    return int(tie.any(axis=1).sum()), int(v.shape[0]), float(gap[tie].min()), float(step[tie].max()), k


def rounding_step(a: np.ndarray, precision: str) -> np.ndarray:
    """The format's spacing at |a| (float16: numpy's own; bfloat16: 8 significant bits)."""
    if precision == "fp16":
        return np.spacing(a.astype(np.float16)).astype(np.float64)
    e = np.floor(np.log2(np.maximum(a, np.finfo(np.float32).tiny)))
    return np.exp2(e - 7)


def stored(x: np.ndarray, precision: str) -> np.ndarray:
    """`x` (float64) as the format stores it: float16 by numpy; bfloat16 by float32's upper 16 bits, nearest-even."""
    if precision == "fp16":
        return np.asarray(x).astype(np.float16).astype(np.float64)
    bits = np.asarray(x).astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def opset(model) -> int:
    """The model's default-domain opset (Softmax's axis reads differently before 13)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def softmax_tie(node, x: np.ndarray, version: int, precision: str) -> tuple[int, int, float, float, int] | None:
    """(tied rows, rows, the smallest margin, the step there, 1) where some row of a Softmax's logits `x` (the FP32
    reference) is a hard choice between near ties: its softmax one-hot (top weight ≥ SATURATED) while its top two
    logits lie within the format's rounding step at their magnitude; None otherwise."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if version >= 13 else 1)
    axis = axis % x.ndim if x.ndim else 0
    if version >= 13:
        v = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, x.shape[axis])
    else:  # opset < 13: the input as a matrix, rows the axes before `axis`
        v = x.astype(np.float64).reshape(int(np.prod(x.shape[:axis])), -1)
    if v.shape[1] < 2 or not v.shape[0]:
        return None
    s = -np.sort(-v, axis=1)
    top, second = s[:, 0], s[:, 1]
    with np.errstate(invalid="ignore", over="ignore"):
        weight = 1.0 / np.exp(v - top[:, None]).sum(axis=1)  # the top weight of each row
        gap = top - second
        a = np.maximum(np.abs(top), np.abs(second))
        bits = 10 if precision == "fp16" else 7  # the stored mantissa bits: the step is 2^-bits of the binade
        step = np.exp2(np.floor(np.log2(np.maximum(a, np.finfo(np.float32).tiny))) - bits)
        tie = np.isfinite(top) & np.isfinite(second) & (weight >= SATURATED) & (gap <= step)
    if not tie.any():
        return None
    return int(tie.sum()), int(v.shape[0]), float(gap[tie].min()), float(step[tie].max()), 1
