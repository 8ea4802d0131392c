"""Search strategies as pure objects: each proposes the next experiment and takes its verdict.

Nothing here knows about models or runners (after Polygraphy's `debug` markers), so every strategy is tested
with oracle functions instead of models. One protocol for all of them:

    search = MarkBisect(order)
    while (experiment := search.next()) is not None:
        search.tell(run_and_judge(experiment))   # True = bad (beyond tolerance)
    search.result, search.status, search.history

`history` holds one step per run, so `len(history)` is the number of runs made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generator


@dataclass(frozen=True)
class MarkStep:
    """One run of a marking search: the tensors marked as outputs and the verdict for each (True = bad)."""

    marked: tuple[str, ...]
    bad: tuple[bool, ...]


@dataclass(frozen=True)
class KeepStep:
    """One run of the keep-FP32 search: the nodes kept in FP32, the verdict, and which phase asked for it."""

    keep: tuple[str, ...]
    bad: bool
    phase: str  # none | all | prefix | minimize


class _Search:
    """The next()/tell() machinery; subclasses write the search as a generator (`_run`) that yields experiments."""

    def __init__(self) -> None:
        self.history: list = []
        self.status = "running"
        self._pending: tuple[str, ...] | None = None
        self._gen = self._run()
        self._advance(None)

    def next(self) -> list[str] | None:
        """The experiment to run next (asking twice without `tell` gives the same one); None when finished."""
        return None if self._pending is None else list(self._pending)

    def tell(self, verdict) -> None:
        """The verdict of the experiment `next()` gave (True / a bool per marked tensor: bad)."""
        if self._pending is None:
            raise RuntimeError(f"{type(self).__name__}.tell() without a pending experiment: the search is {self.status}")
        self._advance(self._normalize(verdict, self._pending))  # checked here: an error inside _run would end it

    @property
    def done(self) -> bool:
        return self._pending is None

    @property
    def runs(self) -> int:
        return len(self.history)

    def _advance(self, verdict) -> None:
        try:
            self._pending = tuple(self._gen.send(verdict))
        except StopIteration:
            self._pending = None

    def _normalize(self, verdict, pending: tuple[str, ...]):
        """The verdict in the form `_run` receives: a bool per marked tensor (marking searches)."""
        return _verdicts(verdict, pending)

    def _run(self) -> Generator[tuple[str, ...], object, None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield ()


class MarkBisect(_Search):
    """The first probe, in execution order, whose value is bad — marking one (or `per_run`) tensor(s) per run.

    For TensorRT, marking every tensor as an output blocks layer fusion, so the engine measured is not the one
    deployed; marking one tensor at a time keeps the rest of the engine as built. Binary search (k-ary with
    `per_run` = k − 1 > 1): at most `max_runs(n, per_run)` = ⌈log_{per_run+1}(n + 1)⌉ runs, e.g.
    ⌈log2(n + 1)⌉ ≤ ⌈log2 n⌉ + 1 for one mark a run.

    Guarantee without any assumption: `result` was observed bad and `last_good` — the probe just before it in
    `order` — observed good (or `result` is the first probe). It is *the* first bad probe when badness is
    monotone in `order` (a bad tensor's downstream stays bad), the usual case for propagated error.
    `result` is None (status "clean") when no probe was bad.
    """

    def __init__(self, order: Sequence[str], per_run: int = 1):
        if per_run < 1:
            raise ValueError(f"per_run must be at least 1, got {per_run}")
        self.order = _unique(order, "order")
        self.per_run = int(per_run)
        self._lo, self._hi = -1, len(self.order)  # last index seen good, first index seen bad (n: none)
        super().__init__()

    @staticmethod
    def max_runs(n: int, per_run: int = 1) -> int:
        """Worst-case number of runs for `n` probes (each run leaves at most ⌈(u + 1)/(per_run + 1)⌉ − 1 unknowns)."""
        runs, reach = 0, 1
        while reach < n + 1:
            reach *= per_run + 1
            runs += 1
        return runs

    @property
    def result(self) -> str | None:
        if not self.done or self._hi >= len(self.order):
            return None
        return self.order[self._hi]

    @property
    def last_good(self) -> str | None:
        """The probe just before `result` (seen good); None when `result` is the first probe or the search runs."""
        return self.order[self._lo] if self.done and self._lo >= 0 else None

    def _run(self):
        while self._hi - self._lo > 1:
            idx = _spread(self._lo, self._hi, self.per_run)
            marked = tuple(self.order[i] for i in idx)
            bad = yield marked
            self.history.append(MarkStep(marked, bad))
            seen_bad = [i for i, b in zip(idx, bad) if b]
            if seen_bad:
                self._hi = seen_bad[0]
            seen_good = [i for i, b in zip(idx, bad) if not b and i < self._hi]
            if seen_good:
                self._lo = max(seen_good)
        self.status = "found" if self._hi < len(self.order) else "clean"


class ChunkedMarks(_Search):
    """Every probe, at most `max_per_run` marked per run, in execution order: ⌈n / max_per_run⌉ runs.

    For "all probes, but never more than N outputs at once" (memory, or fusion kept mostly intact).
    `verdicts` collects the verdict of every probe run so far; `result` is the first bad probe in order.
    With `stop_at_first`, the search ends after the first chunk holding a bad probe.
    """

    def __init__(self, order: Sequence[str], max_per_run: int, stop_at_first: bool = False):
        if max_per_run < 1:
            raise ValueError(f"max_per_run must be at least 1, got {max_per_run}")
        self.order = _unique(order, "order")
        self.max_per_run = int(max_per_run)
        self.stop_at_first = stop_at_first
        self.verdicts: dict[str, bool] = {}
        super().__init__()

    @staticmethod
    def max_runs(n: int, max_per_run: int) -> int:
        return math.ceil(n / max_per_run)

    @property
    def result(self) -> str | None:
        if not self.done:
            return None
        return next((p for p in self.order if self.verdicts.get(p)), None)

    def _run(self):
        for lo in range(0, len(self.order), self.max_per_run):
            chunk = self.order[lo:lo + self.max_per_run]
            bad = yield chunk
            self.history.append(MarkStep(chunk, bad))
            self.verdicts.update(zip(chunk, bad))
            if self.stop_at_first and any(bad):
                break
        self.status = "found" if any(self.verdicts.values()) else "clean"


class KeepFp32Search(_Search):
    """A small set of nodes to keep in FP32 so that an FP16 model passes; `next()` gives the keep set to try.

    `candidates` are ranked, most likely needed first (see `cp_debug.bisect.keep_fp32.rank_candidates`).
    Phases, each experiment run once (verdicts are cached by set, so a set is never run twice):
      1. none: keep nothing. Passing → status "not_needed", result ().
      2. all: keep every candidate. Failing → status "impossible", result None: these candidates cannot fix it.
      3. prefix: binary search for the shortest passing prefix of the ranked list, ⌈log2 n⌉ runs at most.
      4. minimize: ddmin (Zeller) over that prefix, removing complements of ever finer chunks, down to single
         nodes; no run at all when the prefix has one node (∅ already failed).
    Guarantees, observed rather than assumed: `result` passed, and removing any single node from it failed
    (1-minimal) — every such subset was run, in this search, exactly. Not guaranteed: the smallest set overall
    (that needs exponentially many runs). Runs: 2 + ⌈log2 n⌉ + the ddmin runs for a prefix of k nodes — about
    m·log2 k for m needed nodes, k(k − 1)/2 + k at worst.
    """

    def __init__(self, candidates: Sequence[str]):
        self.candidates = _unique(candidates, "candidates")
        self._cache: dict[frozenset[str], bool] = {}
        self._result: tuple[str, ...] | None = None
        super().__init__()

    @property
    def result(self) -> tuple[str, ...] | None:
        """The keep set found (in candidate order); () when none is needed; None when impossible or running."""
        return self._result

    def _normalize(self, verdict, pending: tuple[str, ...]) -> bool:
        return _verdict(verdict)

    def _test(self, keep: Sequence[str], phase: str):
        key = frozenset(keep)
        if key not in self._cache:
            keep = tuple(keep)
            bad = yield keep
            self._cache[key] = bad
            self.history.append(KeepStep(keep, bad, phase))
        return self._cache[key]

    def _run(self):
        c = self.candidates
        if not (yield from self._test((), "none")):
            self.status, self._result = "not_needed", ()
            return
        if (yield from self._test(c, "all")):
            self.status = "impossible"
            return
        lo, hi = 0, len(c)  # prefix c[:lo] fails, c[:hi] passes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (yield from self._test(c[:mid], "prefix")):
                lo = mid
            else:
                hi = mid
        keep = yield from self._ddmin(list(c[:hi]))
        self.status, self._result = "found", tuple(keep)

    def _ddmin(self, keep: list[str]):
        """ddmin, complements only: the set shrinks while some complement passes; ends 1-minimal."""
        g = 2
        while len(keep) >= 2:
            g = min(g, len(keep))
            for chunk in _split(keep, g):
                rest = [x for x in keep if x not in chunk]
                if not (yield from self._test(rest, "minimize")):
                    keep, g = rest, max(g - 1, 2)
                    break
            else:
                if g >= len(keep):
                    break
                g = min(2 * g, len(keep))
        return keep  # one node left: removing it gives ∅, which failed in phase 1


def _spread(lo: int, hi: int, k: int) -> list[int]:
    """Up to k distinct indices spread evenly strictly between lo and hi."""
    m = min(k, hi - lo - 1)
    return [lo + (j + 1) * (hi - lo) // (m + 1) for j in range(m)]


def _split(items: list[str], g: int) -> list[list[str]]:
    """`items` in g contiguous chunks of near-equal size."""
    n = len(items)
    return [items[i * n // g:(i + 1) * n // g] for i in range(g)]


def _unique(names: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(names)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{what} lists {', '.join(map(repr, dupes[:5]))} more than once")
    return names


def _verdict(value) -> bool:
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
        raise TypeError(f"tell() takes one bool (True = bad) for this search, got {type(value).__name__}")
    if value is None:
        raise TypeError("tell() needs a verdict: True (bad) or False (good), got None")
    return bool(value)


def _verdicts(value, marked: tuple[str, ...]) -> tuple[bool, ...]:
    """A bool per marked tensor, from one bool (one tensor marked), a sequence in marked order, or a name → bool map."""
    if isinstance(value, Mapping):
        missing = [m for m in marked if m not in value]
        if missing:
            raise ValueError(f"tell() lacks a verdict for {', '.join(map(repr, missing[:5]))}")
        return tuple(bool(value[m]) for m in marked)
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):  # a list, tuple or numpy array
        value = list(value)
        if len(value) != len(marked):
            raise ValueError(f"tell() got {len(value)} verdicts for {len(marked)} marked tensors")
        return tuple(bool(v) for v in value)
    if len(marked) != 1:
        raise ValueError(f"{len(marked)} tensors were marked: tell() needs a verdict for each (a list or a dict)")
    return (_verdict(value),)
