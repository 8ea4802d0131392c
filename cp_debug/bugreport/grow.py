"""Grow a bug-report window upstream until the candidate diverges on the reference's values.

When the error accumulates over many layers ("no single layer dominates"), the root cause's segment alone stays
within tolerance and a bundle of it reproduces nothing. So the window keeps the first divergent tensor as its
output and its start moves upstream over the run's cut points (the probe tensors whose reference values the
run knows), the reference's values fed at the start, until the candidate diverges at the output: a binary
search for the latest start that still diverges, as polygraphy's `debug reduce` bisects a graph. The whole
stage (from its inputs) is tried first; when even that stays within tolerance, the error came in with the
stage's inputs (an earlier stage) and there is no window on reference values to find. Every window returned
has been cut, transformed, run and seen to diverge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.graph.segment import extract_segment, segment_inputs

if TYPE_CHECKING:
    import onnx

STAGE_INPUT = "the stage's inputs"


@dataclass
class Window:
    """One window that was run: FP32 model, the candidate's graph of it, its feed and both outputs."""

    start: str  # the cut it starts at (a probe name, or STAGE_INPUT)
    model: "onnx.ModelProto"
    candidate: "onnx.ModelProto"
    inputs: dict[str, np.ndarray]
    reference_outputs: dict[str, np.ndarray]
    candidate_outputs: dict[str, np.ndarray]
    diff: TensorDiff

    @property
    def nodes(self) -> int:
        return len(self.model.graph.node)

    @property
    def diverged(self) -> bool:
        return self.diff.status != "ok"


@dataclass(frozen=True)
class Trial:
    """A start that was tried: how many nodes its window holds and what the candidate did there."""

    start: str
    nodes: int
    status: str
    max_abs: float
    rel_rmse: float
    share_beyond: float

    def line(self) -> str:
        return (f"from {self.start}: {self.nodes} node{'s' if self.nodes != 1 else ''}, {self.status} "
                f"(max |diff| {self.max_abs:.3g}, "
                f"rel. RMSE {self.rel_rmse:.3g}, {self.share_beyond:.3%} beyond tolerance)")


@dataclass
class Growth:
    found: Window | None  # the smallest diverging window found; None when not even the whole stage diverges
    whole: Window  # the whole stage up to the target, on the reference's stage inputs
    trials: list[Trial] = field(default_factory=list)


def grow_window(model: "onnx.ModelProto", target: str, reference: np.ndarray, cuts: list[tuple[str, str]],
                values: Callable[[list[str]], dict[str, np.ndarray]], stage_inputs: tuple[str, ...],
                make_candidate: Callable[["onnx.ModelProto", dict], "onnx.ModelProto"],
                run: Callable[["onnx.ModelProto", dict], dict], tolerance: Tolerance) -> Growth:
    """Search the latest start among `cuts` ((name, tensor) in execution order, upstream of `target`) whose
    window diverges after `make_candidate` (the precision transform, given the FP32 window and its feed).

    `values(tensors)` gives the reference's values at cut tensors and stage inputs; `run(model, feed)` runs the
    candidate's window (ONNX Runtime, say). The whole stage is window 0; window k > 0 starts at cuts[k - 1].
    """
    search = _Search(model, target, reference, cuts, values, stage_inputs, make_candidate, run, tolerance)
    whole = search.window(0)
    growth = Growth(None, whole, search.trials)
    if not whole.diverged:
        return growth
    lo, hi = 0, len(cuts)  # window lo diverges; find the largest such k (the smallest window)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if search.window(mid).diverged:
            lo = mid
        else:
            hi = mid - 1
    growth.found = search.window(lo)
    return growth


class _Search:
    def __init__(self, model, target, reference, cuts, values, stage_inputs, make_candidate, run, tolerance):
        self.model, self.target, self.reference = model, target, np.asarray(reference)
        self.cuts, self.values, self.inputs = list(cuts), values, tuple(stage_inputs)
        self.make_candidate, self.run, self.tol = make_candidate, run, tolerance
        self.by_boundary: dict[tuple[str, ...], Window] = {}
        self.trials: list[Trial] = []

    def window(self, k: int) -> Window:
        # the walk back from the target passes the later cuts and stops at cut k - 1 (or at an earlier cut or
        # stage input that a skip connection reaches)
        known = set(self.inputs) | {t for _, t in self.cuts[:k]}
        boundary = tuple(segment_inputs(self.model, [self.target], known - {self.target}))
        if boundary not in self.by_boundary:
            start = STAGE_INPUT if k == 0 else self.cuts[k - 1][0]
            self.by_boundary[boundary] = w = self._run(start, list(boundary))
            self.trials.append(Trial(start, w.nodes, w.diff.status, w.diff.max_abs, w.diff.rel_rmse,
                                     w.diff.share_beyond))
        return self.by_boundary[boundary]

    def _run(self, start: str, boundary: list[str]) -> Window:
        feed = {t: np.asarray(v) for t, v in self.values(boundary).items()}
        fp32 = extract_segment(self.model, feed, [self.target], {self.target: self.reference.shape})
        cand = self.make_candidate(fp32, feed)
        got = self.run(cand, feed)
        diff = TensorDiff.from_arrays(self.target, self.reference, got[self.target], self.tol)
        return Window(start, fp32, cand, feed, {self.target: self.reference}, {self.target: got[self.target]}, diff)
