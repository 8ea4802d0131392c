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

from cp_debug.bisect.cures.search import Verdict, run_search
from cp_debug.bisect.cures.window_search import WindowGrowSearch
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
    The search is `bisect.cures.window_search.WindowGrowSearch`, run by the one search driver; `trials` are its runs.
    """
    windows = _Windows(model, target, reference, cuts, values, stage_inputs, make_candidate, run, tolerance)
    trace = run_search(WindowGrowSearch(len(cuts), key=windows.boundary), windows)
    trials = [windows.trial(s.figures) for s in trace.steps]
    found = windows.at(trace.result) if trace.status == "found" else None
    return Growth(found, windows.at(0), trials)


class _Windows:
    """The judge of `WindowGrowSearch`: window k (0: the whole stage; k > 0 from cuts[k - 1]) cut, transformed,
    run and compared at the target. Windows that share a boundary are one window."""

    def __init__(self, model, target, reference, cuts, values, stage_inputs, make_candidate, run, tolerance):
        self.model, self.target, self.reference = model, target, np.asarray(reference)
        self.cuts, self.values, self.inputs = list(cuts), values, tuple(stage_inputs)
        self.make_candidate, self.run, self.tol = make_candidate, run, tolerance
        self.by_boundary: dict[tuple[str, ...], Window] = {}
        self._boundaries: dict[int, tuple[str, ...]] = {}

    def boundary(self, k: int) -> tuple[str, ...]:
        """The tensors window k is fed: the walk back from the target passes the later cuts and stops at cut
        k - 1 (or at an earlier cut or stage input that a skip connection reaches)."""
        if k not in self._boundaries:
            known = set(self.inputs) | {t for _, t in self.cuts[:k]}
            self._boundaries[k] = tuple(segment_inputs(self.model, [self.target], known - {self.target}))
        return self._boundaries[k]

    def __call__(self, k: int) -> Verdict:
        w = self.at(k)
        return Verdict(w.diverged, w)

    def at(self, k: int) -> Window:
        """Window k, run once per boundary."""
        boundary = self.boundary(k)
        if boundary not in self.by_boundary:
            start = STAGE_INPUT if k == 0 else self.cuts[k - 1][0]
            self.by_boundary[boundary] = self._run(start, list(boundary))
        return self.by_boundary[boundary]

    @staticmethod
    def trial(w: Window) -> Trial:
        return Trial(w.start, w.nodes, w.diff.status, w.diff.max_abs, w.diff.rel_rmse, w.diff.share_beyond)

    def _run(self, start: str, boundary: list[str]) -> Window:
        feed = {t: np.asarray(v) for t, v in self.values(boundary).items()}
        fp32 = extract_segment(self.model, feed, [self.target], {self.target: self.reference.shape})
        cand = self.make_candidate(fp32, feed)
        got = self.run(cand, feed)
        diff = TensorDiff.from_arrays(self.target, self.reference, got[self.target], self.tol)
        return Window(start, fp32, cand, feed, {self.target: self.reference}, {self.target: got[self.target]}, diff)
