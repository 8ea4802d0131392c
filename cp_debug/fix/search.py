"""The fix search: bisect's `KeepFp32Search` run by the one search driver against a `FixTarget` over frames.

The same pure search object and driver as `cpdebug keep-fp32` and the INT8 exclusion search (its "keep" set is
what stays in FP32 / out of INT8); only the judge differs (`CheapFirst`). Each experiment is judged first on the
worst frames (cheap rejection, for the per-frame criteria: within precision, tol and lost boxes, where failing
on some frames is failing) and, if it holds there, on the whole set. The frame order comes from the caller (a
sweep / bisect report) or from the search's first run, which always covers every frame. A set the search returns
passed on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


from cp_debug.bisect.cures.search import KeepFp32Search, TraceStep, Verdict, keep_step_json, run_search
from cp_debug.fix.figures import Figures
from cp_debug.fix.targets import FixTarget

# judge(keep set, frame indices, whole set?) -> Figures
Judge = Callable[[tuple[str, ...], Sequence[int], bool], Figures]


def step_json(s: TraceStep) -> dict:
    """One step of the fix search as fix.json lists it: the set kept in FP32, its phase (see KeepFp32Search), the
    verdict, the frames it was judged on ("worst k" when rejected on the worst frames alone, else "all") and the
    figures there (`Checked`)."""
    return {**keep_step_json(s), "checked": s.figures.checked, "seconds": round(s.seconds, 3),
            **s.figures.figures.to_json()}


@dataclass(frozen=True)
class FixSearch:
    """status: found (keep is 1-minimal), not_needed (keep is ()), impossible (keep is None: even every
    candidate kept fails; `steps[1]` holds its figures). steps: every run, in order; figures: `Checked`."""

    status: str
    keep: tuple[str, ...] | None
    candidates: tuple[str, ...]
    steps: tuple[TraceStep, ...]
    target: FixTarget
    frame_order: tuple[int, ...]

    @property
    def runs(self) -> int:
        return len(self.steps)

    @property
    def cheap_rejections(self) -> int:
        return sum(1 for s in self.steps if s.figures.checked != "all")

    def to_json(self) -> dict:
        return {"status": self.status, "keep": None if self.keep is None else list(self.keep),
                "target": self.target.to_json(), "runs": self.runs, "cheap_rejections": self.cheap_rejections,
                "frame_order": list(self.frame_order), "candidates": list(self.candidates),
                "steps": [step_json(s) for s in self.steps]}


def search_fix(candidates: Sequence[str], judge: Judge, target: FixTarget, n_frames: int, *, worst: int = 2,
               frame_order: Sequence[int] | None = None,
               on_step: Callable[[TraceStep], None] | None = None) -> FixSearch:
    """A 1-minimal set of `candidates` (ranked, likeliest first) to keep for `target` to hold on all n_frames."""
    cheap = CheapFirst(judge, target, n_frames, worst, frame_order)
    trace = run_search(KeepFp32Search(candidates), cheap, on_step)
    return FixSearch(trace.status, trace.result, tuple(candidates), trace.steps, target,
                     tuple(cheap.order or range(n_frames)))


@dataclass(frozen=True)
class Checked:
    """What `CheapFirst` measured for one keep set (a `TraceStep`'s figures): the frames it was judged on ("worst k"
    or "all") and the figures there."""

    checked: str
    figures: Figures


class CheapFirst:
    """The fix's judge for the search driver: a keep set is judged first on the `worst` worst frames (cheap
    rejection, for the per-frame criteria: within precision, tol and lost boxes, where failing on some frames is
    failing) and, if it holds there, on every frame. Without a given order, the first whole-set run orders the
    frames, worst first."""

    def __init__(self, judge: Judge, target: FixTarget, n_frames: int, worst: int,
                 frame_order: Sequence[int] | None):
        self.judge, self.target, self.n_frames, self.worst = judge, target, n_frames, worst
        self.order = list(frame_order) if frame_order is not None else None
        self.per_frame = target.per_frame

    def __call__(self, keep: Sequence[str]) -> Verdict:
        keep = tuple(keep)
        if self.per_frame and self.order is not None and 0 < self.worst < self.n_frames:
            few = tuple(self.order[:self.worst])
            fig = self.judge(keep, few, False)
            if not self.target.holds(fig.worst, None, fig.lost_boxes, fig.outcome):
                return Verdict(True, Checked(f"worst {len(few)}", fig))
        every = tuple(range(self.n_frames))
        fig = self.judge(keep, every, True)
        if self.order is None:
            self.order = sorted(every, key=lambda i: -_nan_last(fig.rel_rmse[i]))
        passed = self.target.holds(fig.worst, fig.map_drop, fig.lost_boxes, fig.outcome)
        return Verdict(not passed, Checked("all", fig))


def _nan_last(x: float) -> float:
    return float("inf") if x != x else x
