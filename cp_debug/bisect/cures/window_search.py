"""The bug-report windows' searches (`bugreport/window.py`, `bugreport/grow.py`): a contiguous range of a stage's
nodes that still diverges, shrunk from both ends, and the smallest window that still diverges, grown from the end —
strategies on the one driver (`search.run_search`), tested with oracle functions like every search there.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from cp_debug.bisect.cures.search import Search


class RangeShrinkSearch(Search):
    """A short contiguous range [start, stop) of n ordered nodes that still diverges; `next()` gives the range.

    Phases: whole (0, n) first — not diverging → status "not_diverging", result None; then, up to three rounds
    while either end moves, end (binary search for the shortest diverging range from the start) and start (the
    latest start that still diverges up to that end). Result: status "found", (start, stop), a range that was
    run and seen to diverge. After `max_runs` runs every new range counts as not diverging (not run).
    """

    def __init__(self, n: int, max_runs: int | None = None):
        self.n = int(n)
        super().__init__(max_runs)

    def _run(self):
        if not (yield from self._test((0, self.n), "whole")):
            self.status = "not_diverging"
            return
        start, stop = 0, self.n
        for _ in range(3):  # a new start can let the end move again; stop when neither moves
            lo, hi = start + 1, stop  # the shortest diverging range [start, hi)
            while lo < hi:
                mid = (lo + hi) // 2
                if (yield from self._test((start, mid), "end")):
                    hi = mid
                else:
                    lo = mid + 1
            new_stop = hi
            lo, hi = start, new_stop - 1  # the latest start that still diverges
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if (yield from self._test((mid, new_stop), "start")):
                    lo = mid
                else:
                    hi = mid - 1
            if (lo, new_stop) == (start, stop):
                break
            start, stop = lo, new_stop
        self.status, self._result = "found", (start, stop)


class WindowGrowSearch(Search):
    """The largest k in 0..n whose window diverges, windows growing as k falls (k = 0: the whole stage);
    `next()` gives k.

    Phases: whole (k = 0) — not diverging → status "not_diverging", result None; then grow, a binary search for
    the largest diverging k (assumes divergence holds below it). `key(k)`: windows with the same key are one
    run (two cuts whose windows share a boundary), so each is run once. Result: status "found", k.
    """

    def __init__(self, n: int, key: Callable[[int], Hashable] | None = None):
        self.n = int(n)
        self._window_key = key or (lambda k: k)
        super().__init__()

    def _key(self, experiment) -> Hashable:
        return self._window_key(experiment)

    def _run(self):
        if not (yield from self._test(0, "whole")):
            self.status = "not_diverging"
            return
        lo, hi = 0, self.n  # window lo diverges; find the largest such k (the smallest window)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (yield from self._test(mid, "grow")):
                lo = mid
            else:
                hi = mid - 1
        self.status, self._result = "found", lo
