"""Weights whose sum cancels, fed an input with an offset (issue 115, item 2: the reason is the mechanism the data
shows): a trained Conv whose filters are DC-free — each sums to ~0 while Σ|w| does not — reads an input whose mean
is far from 0 (openwakeword's speech embedding: mel features `x / 10 + 2`, 5–11, mean 8.3). INT8's rounding of each
weight is small, but it leaves each filter a sum (Σ round(w) − Σ w) that the input's offset multiplies: a constant
added to every output of its channel. By hand, that Conv's weights kept in FP32 alone (its Q/DQ pairs kept) do what
leaving the whole Conv out of INT8 does; its input's pair removed alone changes nothing.

The finding reads the root cause's own Conv nodes with a constant weight, the share of their filters that cancel
(|Σw| ≤ `CANCELS` · Σ|w|), the weights rounded as the built-in quantizes them (int8, symmetric, per output channel)
and the reference's mean of the Conv's input per channel (one FP32 run of the stage, that tensor exposed): the leak
per output channel is Σ_c (Σ_k (round(w) − w)[o, c, k]) · mean_c. It is said where at least half of the filters
cancel and the leak reaches `LEAKS` of the layer's own error, in place of the rounding hint, with both figures and
the cure: the weights kept float (or the offset taken out before the layer). A user's Q/DQ file (`ort@DIR`) is read
from its own numbers: the Conv the root's probe stands for (behind its output's Q/DQ pair), its weight stored quantized
and dequantized at the file's own scales and zero points (per channel or per tensor), against the reference's weight
of the node of the same name (the residue per filter is the file's rounding, whatever tool made it), the input's mean
from the reference's graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment

CANCELS = 0.01  # a filter whose |Σw| is at most this share of its Σ|w|: DC-free
LEAKS = 0.25  # the leak's largest value against the layer's own max abs error for it to be said


@dataclass(frozen=True)
class Cancel:
    node: str
    cancelling: int  # filters that cancel
    filters: int
    mean: float  # the input's mean (over its channels' means, the largest in magnitude)
    residue: float  # the largest |Σ round(w) − Σ w| of a filter
    leak: float  # the largest |leak| of an output channel
    own: float  # the layer's own (local) max abs error
    rounding: str = "INT8's rounding"  # whose rounding: the built-in's, or the file's own levels at its scales

    def text(self) -> str:
        return (f"its weights cancel: {self.cancelling} of {self.filters} filters of Conv '{self.node}' sum to ≤ "
                f"{CANCELS:.0%} of their Σ|w| (DC-free), fed an input whose mean is {self.mean:.3g}: {self.rounding} "
                f"of each weight is small, but it leaves each filter a sum up to {self.residue:.2g}, which the input's "
                f"offset multiplies into every output of its channel: up to {self.leak:.2g}, against the layer's own "
                f"error {self.own:.3g} (max abs) — keep its weights float, or take the offset out before the layer")


def _rounded(w: np.ndarray) -> np.ndarray:
    """`w` (out channels first) rounded as the built-in quantizes Conv weights: int8, symmetric, per channel."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    scale = np.abs(flat).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return (np.clip(np.round(flat / scale), -127, 127) * scale).reshape(w.shape)


def cancelled(run, state, stage: int, probe: str, own_error: float) -> Cancel | None:
    """The first of `probe`'s own Conv nodes whose weights cancel and whose rounding leaks its input's offset by at
    least `LEAKS` of `own_error` (the layer's local max abs error), or None."""
    from cp_debug.bisect.cures.experiment import OrtFp32Reference

    for name, model, node, w, got, rounding in _convs(run, state, stage, probe):
        sums = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (out, in): each filter's sum per input channel
        cancels = np.abs(sums.sum(axis=1)) <= CANCELS * np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        if cancels.mean() < 0.5 or _group(node) != 1:  # grouped convs: each output reads its group's channels
            continue
        x = OrtFp32Reference(model, run.ref_feeds[stage], determinism=run.det)([node.input[0]])[node.input[0]]
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != w.ndim or x.shape[1] != w.shape[1]:
            continue
        means = x.mean(axis=tuple(k for k in range(x.ndim) if k != 1))  # per input channel
        residue = (got - w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (out, in)
        leak = np.abs(residue @ means)
        if leak.max() >= LEAKS * own_error:
            return Cancel(name, int(cancels.sum()), int(w.shape[0]), float(means[np.abs(means).argmax()]),
                          float(np.abs(residue.sum(axis=1)).max()), float(leak.max()), float(own_error), rounding)
    return None


def _convs(run, state, stage: int, probe: str):
    """Each of `probe`'s own Conv nodes with a constant weight: (its name, the float graph holding it, its node there,
    its FP32 weight, the weight the candidate computes with, whose rounding that is) — the built-in's: its own graph,
    the weight rounded as it quantizes it; a user's Q/DQ file's: the reference's node of the same name, the file's
    stored levels dequantized at its own scales."""
    from onnx import numpy_helper

    from cp_debug.bisect.cures.restore import own_nodes

    own = own_nodes(run, state, probe)
    if own is None:
        return
    model, mine = own
    file = state.spec.onnx_dir is not None
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    nodes = [_behind_pair(n, producer) for n in model.graph.node if n.name in mine]
    ref = run.subject.stages[stage].onnx() if file else model
    ref_nodes = {n.name: n for n in ref.graph.node}
    ref_inits = {t.name: t for t in ref.graph.initializer} if file else inits
    for node in nodes:
        if node is None or node.op_type != "Conv" or len(node.input) < 2:
            continue
        at = ref_nodes.get(node.name) if file else node
        if at is None or at.op_type != "Conv" or len(at.input) < 2 or at.input[1] not in ref_inits:
            continue
        w = numpy_helper.to_array(ref_inits[at.input[1]]).astype(np.float64)
        got = _stored(node.input[1], producer, inits, w.ndim) if file else _rounded(w)
        if w.ndim >= 3 and got is not None and got.shape == w.shape:
            yield (node.name, ref, at, w, got,
                   "the file's own INT8 rounding (its levels at its own scales)" if file else "INT8's rounding")


def _behind_pair(node, producer: dict):
    """`node`, or where it is a DequantizeLinear reading a QuantizeLinear (a Q/DQ pair on an output), the node that
    pair quantizes."""
    if node.op_type != "DequantizeLinear":
        return node
    q = producer.get(node.input[0])
    return producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None


def _stored(weight: str, producer: dict, inits: dict, ndim: int) -> np.ndarray | None:
    """A user's file's weight as it computes with it: its stored levels dequantized at its own scale and zero point
    (a DequantizeLinear reading an initializer), or None where it is not stored so."""
    from onnx import numpy_helper

    from cp_debug.bisect.findings.quantized.levels import scale_zero

    dq = producer.get(weight)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return None
    params = scale_zero(dq, inits, ndim)
    if params is None:
        return None
    scale, zero = params
    return (numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64) - zero) * scale


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


@dataclass(frozen=True)
class CancelledWeights:
    """The examiner (`contract.py`, a *why*): an INT8 root cause — the built-in's or a user's Q/DQ file's — whose
    Conv's weights cancel over an offset input."""

    fault: str = "cancel"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision == "int8" and c.spec.runs_onnx

    def examine(self, seg: Segment) -> Finding | None:
        r = seg.state.results.get(seg.root) if seg.root in seg.run.probes else None
        at = seg.run.probes[seg.root].stage if r is not None and r.local is not None else None
        found = cancelled(seg.run, seg.state, at, seg.root, r.local.max_abs) if at is not None else None
        return Finding(self.fault, self.role, seg.root, found.text(), found.leak, replaces_hint=True,
                       detail=found) if found else None  # the mechanism, in place of the rounding hint
