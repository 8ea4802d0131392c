"""Search strategies as pure objects: each proposes the next experiment and takes its verdict.

Nothing here knows about models or runners (after Polygraphy's `debug` markers), so every strategy is tested
with oracle functions instead of models. One protocol for all of them:

    search = KeepFp32Search(candidates)
    while (experiment := search.next()) is not None:
        search.tell(run_and_judge(experiment))   # True = bad (beyond tolerance)
    search.result, search.status, search.history

`history` holds one step per run, so `len(history)` is the number of runs made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generator


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
        """The verdict of the experiment `next()` gave (True = bad)."""
        if self._pending is None:
            raise RuntimeError(f"{type(self).__name__}.tell() without a pending experiment: the "
                               f"search is {self.status}")
        self._advance(_verdict(verdict))  # checked here: an error inside _run would end it

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

    def _run(self) -> Generator[tuple[str, ...], object, None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield ()


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
