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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.bisect.ranking import beyond_locally
from cp_debug.bisect.run_state import CandidateState, RunState

DECISION_OPS = ("TopK", "ArgMax", "ArgMin")


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

    def text(self) -> str:
        where = f"{self.module}: " if self.module else ""
        what = f"top {self.chosen}" if self.op == "TopK" else "the top one"
        return (f"decision flip at {where}{self.op} {self.node!r}: the reference's margin between {what} and the "
                f"next is {self.gap:.3g} in {self.ties} of {self.rows} row(s), within {self.precision}'s rounding step "
                f"there ({self.step:.3g}): a near tie the format cannot keep, so the choice flips and everything "
                "after it differs — not a layer's rounding (keeping layers in FP32 does not cure it); compare this "
                "output as a set, or widen the margin")


def decision_flip(run: RunState, state: CandidateState, probe: str | None) -> Flip | None:
    """The flip in `probe`'s segment (see the module docstring), or None."""
    from cp_debug.bisect.op_findings import named_module
    from cp_debug.bisect.segment_why import root_segment, run_segment

    precision = state.judged_at or state.spec.precision
    r = state.results.get(probe) if probe else None
    if precision not in ("fp16", "bf16") or r is None or r.local is None or beyond_locally(r):
        return None
    i = run.probes[probe].stage
    if not any(n.op_type in DECISION_OPS for n in run.stage_of(state.label, i).onnx().graph.node):
        return None  # no decision in the stage: no segment cut (in lockstep, a reference run) to look for one
    rs = root_segment(run, state, i, probe)
    if rs is None:
        return None
    nodes = [n for n in rs.model.graph.node if n.op_type in DECISION_OPS and n.input]
    if not nodes:
        return None
    ref = run_segment(run, "ort", rs.model, rs.feed, list(dict.fromkeys(n.input[0] for n in nodes))).values
    for node in nodes:
        x = ref.get(node.input[0])
        if x is None or not np.issubdtype(x.dtype, np.floating) or x.size < 2:
            continue
        found = margin(node, x, chosen(node, rs.model), precision)
        if found is not None:
            ties, rows, gap, step, k = found
            return Flip(probe, node.name, node.op_type, named_module(node, rs.named), k, ties, rows, gap, step,
                        precision)
    return None


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


def margin(node, x: np.ndarray, k: int | None, precision: str) -> tuple[int, int, float, float, int] | None:
    """(rows within a step, rows, the smallest margin, the step there, k) where some row's margin at the cut is
    within the format's rounding step; None otherwise."""
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
    tie = gap <= step
    if not tie.any():
        return None
    return int(tie.sum()), int(v.shape[0]), float(gap[tie].min()), float(step[tie].max()), k


def rounding_step(a: np.ndarray, precision: str) -> np.ndarray:
    """The format's spacing at |a| (float16: numpy's own; bfloat16: 8 significant bits)."""
    if precision == "fp16":
        return np.spacing(a.astype(np.float16)).astype(np.float64)
    e = np.floor(np.log2(np.maximum(a, np.finfo(np.float32).tiny)))
    return np.exp2(e - 7)
