"""The shape-range search as a pure object (after `bisect/cures/search.py`'s strategies): points are one size a
dynamic axis, the verdict of a point is True where the candidate fails there; nothing here knows of models, so it is
tested with oracle functions.

    search = ShapeRangeSearch(lo, hi, names)
    trace = run_search(search, lambda point: fails(point))
    search.status, search.result          # "found" | "fails_at_min" | "passes_at_max", a RangeResult

Phases: `min`, `max` (the corners); then `axis NAME` for each axis alone, the others at their min (with one axis its
run is the max corner's, not made again), bisected from its min (passes) to its max (fails) — the geometric mean
while the bracket spans more than a factor 2, then the integer middle, to one step —; where no axis fails alone,
`joint`: every axis together along the diagonal from min to max, bisected the same way. The result's
`first_failing` is the smallest failing point found (fewest elements), `last_passing` the passing point one step
before it. A bisection finds a boundary between a passing and a failing point; where failing is not monotone in the
shape there may be others, and the trace holds every point judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cp_debug.bisect.cures.search import Search

Point = tuple[int, ...]


@dataclass(frozen=True)
class Boundary:
    """Where failing starts along one axis (its name) or along the diagonal (`joint`)."""

    along: str
    first_failing: Point
    last_passing: Point


@dataclass(frozen=True)
class RangeResult:
    """The search's answer: the first failing point (None: even the max passes) and the passing point one step
    before it (None: the min fails already), with every boundary found."""

    first_failing: Point | None
    last_passing: Point | None
    boundaries: tuple[Boundary, ...] = ()


class ShapeRangeSearch(Search):
    """The first failing point between `lo` (every axis at its min) and `hi` (at its max); the module docstring says
    how."""

    def __init__(self, lo: Sequence[int], hi: Sequence[int], names: Sequence[str] | None = None,
                 max_runs: int | None = None):
        self.lo, self.hi = tuple(int(v) for v in lo), tuple(int(v) for v in hi)
        if len(self.lo) != len(self.hi) or any(a > b for a, b in zip(self.lo, self.hi)):
            raise ValueError(f"a shape range needs lo <= hi on every axis, got {self.lo} and {self.hi}")
        self.names = tuple(names) if names is not None else tuple(f"axis {k}" for k in range(len(self.lo)))
        super().__init__(max_runs)

    def _run(self):
        lo, hi = self.lo, self.hi
        if (yield from self._test(lo, "min")):
            self.status, self._result = "fails_at_min", RangeResult(lo, None)
            return
        if lo == hi or not (yield from self._test(hi, "max")):
            self.status, self._result = "passes_at_max", RangeResult(None, hi)
            return
        found = []
        for k, name in enumerate(self.names):
            if lo[k] == hi[k]:
                continue
            def at(v: int, k: int = k) -> Point:
                return lo[:k] + (v,) + lo[k + 1:]
            if (yield from self._test(at(hi[k]), f"axis {name}")):
                found.append((yield from self._boundary(name, at, lo[k], hi[k], f"axis {name}")))
        if not found:
            steps = max(b - a for a, b in zip(lo, hi))

            def along(t: int) -> Point:
                return tuple(a + round((b - a) * t / steps) for a, b in zip(lo, hi))
            found.append((yield from self._boundary("joint", along, 0, steps, "joint")))
        first = min(found, key=lambda b: (math.prod(b.first_failing), b.first_failing))
        self.status, self._result = "found", RangeResult(first.first_failing, first.last_passing, tuple(found))

    def _boundary(self, name: str, at: Callable[[int], Point], good: int, bad: int, phase: str):
        """The bracket [good passes, bad fails] narrowed to one step: in log space while it spans more than a factor
        2, then on integers."""
        while bad - good > 1:
            mid = round(math.sqrt(good * bad)) if good > 0 and bad > 2 * good else (good + bad) // 2
            mid = min(max(mid, good + 1), bad - 1)
            if at(mid) in (at(good), at(bad)):  # the diagonal rounds two steps to one point: the bracket is closed
                break
            if (yield from self._test(at(mid), phase)):
                bad = mid
            else:
                good = mid
        return Boundary(name, at(bad), at(good))


def planned_runs(lo: Sequence[int], hi: Sequence[int]) -> int:
    """About how many runs a search of [lo, hi] makes where it bisects (the corners, each axis's far end and its
    bisection): the progress bar's total."""
    moving = [b - a for a, b in zip(lo, hi) if b > a]
    if not moving:
        return 1
    return 2 + sum(1 + math.ceil(math.log2(span)) + 1 for span in moving) - (1 if len(moving) == 1 else 0)
