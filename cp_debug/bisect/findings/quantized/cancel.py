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
the cure: the weights kept float (or the offset taken out before the layer). The built-in's INT8 only: a user's file
rounds its weights its own way (its scales are `qdq_file_why.py`'s)."""

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

    def text(self) -> str:
        return (f"its weights cancel: {self.cancelling} of {self.filters} filters of Conv '{self.node}' sum to ≤ "
                f"{CANCELS:.0%} of their Σ|w| (DC-free), fed an input whose mean is {self.mean:.3g}: INT8's rounding "
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
    from onnx import numpy_helper

    from cp_debug.bisect.cures.experiment import OrtFp32Reference
    from cp_debug.bisect.cures.restore import own_nodes

    own = own_nodes(run, state, probe)
    if own is None or not own_error > 0:
        return None
    model, mine = own
    weights = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.name not in mine or node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
        if w.ndim < 3:
            continue
        sums = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (out, in): each filter's sum per input channel
        cancels = np.abs(sums.sum(axis=1)) <= CANCELS * np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        if cancels.mean() < 0.5 or _group(node) != 1:  # grouped convs: each output reads its group's channels
            continue
        x = OrtFp32Reference(model, run.ref_feeds[stage], determinism=run.det)([node.input[0]])[node.input[0]]
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != w.ndim or x.shape[1] != w.shape[1]:
            continue
        means = x.mean(axis=tuple(k for k in range(x.ndim) if k != 1))  # per input channel
        residue = (_rounded(w) - w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (out, in)
        leak = np.abs(residue @ means)
        if leak.max() >= LEAKS * own_error:
            return Cancel(node.name, int(cancels.sum()), int(w.shape[0]), float(means[np.abs(means).argmax()]),
                          float(np.abs(residue.sum(axis=1)).max()), float(leak.max()), float(own_error))
    return None


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


@dataclass(frozen=True)
class CancelledWeights:
    """The examiner (`contract.py`, a *why*): the built-in INT8's root cause whose Conv's weights cancel over an
    offset input."""

    fault: str = "cancel"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision == "int8" and c.spec.runs_onnx and not c.own_files

    def examine(self, seg: Segment) -> Finding | None:
        r = seg.state.results.get(seg.root) if seg.root in seg.run.probes else None
        at = seg.run.probes[seg.root].stage if r is not None and r.local is not None else None
        found = cancelled(seg.run, seg.state, at, seg.root, r.local.max_abs) if at is not None else None
        return Finding(self.fault, self.role, seg.root, found.text(), found.leak, replaces_hint=True,
                       detail=found) if found else None  # the mechanism, in place of the rounding hint
