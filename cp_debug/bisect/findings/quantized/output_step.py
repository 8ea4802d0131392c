"""An output quantized coarser than its decision's margin (issue 115, item 2: the reason is the mechanism the data
shows). A classifier's scores over many classes span a wide range (g2pM's 876 pinyin logits: about ±129), and one
INT8 Q/DQ pair on that output — the built-in's on its last Gemm's output, `quantize_static`'s on a Gemm writing a
graph output — rounds every score to a multiple of its range / 127 (1.02 there): two classes closer than that read
the same level, and the argmax takes the first of them. By hand, g2pM's changed reading is such a row: the
reference's top two 0.37 apart, three classes at one level in INT8; its last Gemm left out of INT8 (its output pair
with it) brings the reading back, the Gemm before it does not.

The finding reads the root cause's tensor where it is a graph output of scores along its last axis (written by a
Gemm / MatMul, or a Softmax over that axis: not a detector's head of boxes by anchor), read through a Q/DQ pair in the
candidate (the built-in's calibrated amax / 127, or the user's
file's own scale), and the reference's top-two margin of each row: it is said, in place of the rounding hint, where a
decision flipped and at least one row's margin lies below one step, with the step, its range, the rows and the cure
(the output kept float: its writer left out of INT8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment


@dataclass(frozen=True)
class OutputStep:
    tensor: str
    step: float
    lo: float  # the pair's range: its lowest and highest level
    hi: float
    classes: int
    rows: int  # rows whose reference's top two lie closer than one step
    of: int
    nearest: float  # the smallest top-two margin among them

    def text(self) -> str:
        return (f"the output '{self.tensor}' is quantized at a step of {self.step:.3g} (its range [{self.lo:.3g}, "
                f"{self.hi:.3g}] over {self.classes} scores a row, on INT8's levels): scores closer than one step "
                f"read the same level, and an argmax takes the first of them — {self.rows} of {self.of} row(s) have "
                f"their top two closer (the nearest {self.nearest:.3g} apart); keep this output float (its writer out "
                "of INT8)")


def _step(state, st, tensor: str) -> tuple[float, float, float] | None:
    """(the step, the lowest and the highest level) of the Q/DQ pair the candidate reads `tensor` through: a user's
    file's own scale and zero point (its DequantizeLinear writing `tensor`), else the built-in's symmetric
    calibrated amax / 127."""
    if state.spec.onnx_dir is not None:
        from cp_debug.graph.qdq_pair import INITIALIZER, QdqIndex

        index = QdqIndex.of(st.onnx())
        dq = index.writer.get(tensor)
        pair = index.pair(dq) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if pair is None or pair.zero_from != INITIALIZER or pair.scale_from != INITIALIZER \
                or pair.qtype not in ("int8", "uint8") or (ends := pair.ends) is None:
            return None
        return pair.step, *ends
    amax = state.int8_amax.get(tensor, state.int8_amax.get(f"{tensor}_QuantizeLinear_Input"))
    return (float(amax) / 127.0, -float(amax), float(amax)) if amax else None


def _scores(run, stage: int, tensor: str) -> bool:
    """Whether the reference graph writes `tensor` as a score per class along its last axis: a Gemm / MatMul's output
    (a classifier head) or a (Log)Softmax's over its last axis — not a detector's Concat of boxes and scores, whose
    last axis holds anchors."""
    from onnx import helper

    node = next((n for n in run.subject.stages[stage].onnx().graph.node if tensor in n.output), None)
    if node is None or node.op_type not in ("Gemm", "MatMul", "Softmax", "LogSoftmax"):
        return False
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
    return node.op_type in ("Gemm", "MatMul") or axis == -1 or axis == len(run.ref_outputs[stage][tensor].shape) - 1


def coarse_output(run, state, root: str) -> OutputStep | None:
    """`root`'s tensor read as a graph output through a pair coarser than some row's top-two margin, or None."""
    from cp_debug.bisect.findings.decisions import flipped

    p = run.probes.get(root)
    if p is None or not flipped(state):
        return None
    st = run.stage_of(state.label, p.stage)
    pm = st.probe_map()
    tensor = root if p.kind == "output" else (pm.tensors.get(root) if pm is not None else None)
    ref = (run.ref_outputs.get(p.stage) or {}).get(tensor)
    if tensor is None or ref is None or np.ndim(ref) < 1 or np.shape(ref)[-1] < 2 or not _scores(run, p.stage, tensor):
        return None
    got = _step(state, st, tensor)
    if got is None:
        return None
    step, lo, hi = got
    rows = np.sort(np.asarray(ref, np.float64).reshape(-1, np.shape(ref)[-1]), axis=1)
    margin = rows[:, -1] - rows[:, -2]
    close = margin[margin < step]
    if not close.size:
        return None
    return OutputStep(tensor, step, lo, hi, rows.shape[1], int(close.size), int(margin.size), float(close.min()))


@dataclass(frozen=True)
class CoarseOutput:
    """The examiner (`contract.py`, a *why*): an INT8 root cause — the built-in's or a user's Q/DQ file's — that is a
    graph output of scores whose pair's step exceeds a row's top-two margin; else a decision at a Sigmoid's threshold
    read through a pair coarser than the reference's distance to it (`threshold_step.py`)."""

    fault: str = "output step"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision == "int8" and c.spec.runs_onnx

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.quantized.threshold_step import CoarseThreshold

        found = coarse_output(seg.run, seg.state, seg.root) if seg.root in seg.run.probes else None
        if found is None:  # no row of scores: a decision at a Sigmoid's threshold read through a coarse pair
            return CoarseThreshold().examine(seg)
        return Finding(self.fault, self.role, seg.root, found.text(), found.step, replaces_hint=True,
                       detail=found)  # the mechanism, in place of the rounding hint
