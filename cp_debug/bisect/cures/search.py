"""Search strategies as pure objects, and the one driver that runs any of them against a judge.

Nothing here knows about models or runners (after Polygraphy's `debug` markers), so every strategy is tested
with oracle functions instead of models. One protocol for all of them:

    search = KeepFp32Search(candidates)
    while (experiment := search.next()) is not None:
        search.tell(run_and_judge(experiment))   # True = bad (beyond tolerance)
    search.result, search.status, search.history

`history` holds one step per run, so `len(history)` is the number of runs made. `run_search(strategy, judge)`
is that loop once for every caller (keep-fp32, the INT8 exclusion search, fix, the bug-report windows): the
judge answers a bool or a `Verdict` carrying its figures, and the driver returns a typed `Trace` of every run:
its `TraceStep`s are the one step record of every search (each search types its own `figures`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generator, Protocol


@dataclass(frozen=True)
class KeepStep:
    """One run of the keep-FP32 search: the nodes kept in FP32, the verdict, and which phase asked for it."""

    keep: tuple[str, ...]
    bad: bool
    phase: str  # none | all | prefix | minimize


@dataclass(frozen=True)
class Tried:
    """One run of a range or window search: the experiment, the verdict (True = diverges), the phase."""

    experiment: object
    bad: bool
    phase: str


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: bad (beyond tolerance) and the figures it measured (any typed value), kept in the trace."""

    bad: bool
    figures: object = None


@dataclass(frozen=True)
class TraceStep:
    """One run the driver made: its number (1-based), the phase that asked for it, the experiment, the verdict
    (True = bad), the judge's figures and the seconds the run took."""

    step: int
    phase: str
    experiment: object
    bad: bool
    figures: object
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.bad


@dataclass(frozen=True)
class Trace:
    """Every run of one search, in order, with the strategy's result and status at the end."""

    steps: tuple[TraceStep, ...]
    result: object
    status: str

    @property
    def runs(self) -> int:
        return len(self.steps)

    def find(self, experiment, key: Callable[[object], Hashable] | None = None) -> TraceStep:
        """The step that ran `experiment` (compared by `key`, e.g. frozenset for keep sets); KeyError if none."""
        key = key or (lambda x: x)
        want = key(experiment)
        for s in self.steps:
            if key(s.experiment) == want:
                return s
        raise KeyError(f"no run of {experiment!r} in this trace")


class Strategy(Protocol):
    """What the driver needs of a search: the next experiment (None when done), its phase, and the verdict."""

    status: str

    def next(self): ...

    @property
    def phase(self) -> str | None: ...

    def tell(self, verdict) -> None: ...

    @property
    def result(self): ...


def run_search(strategy: Strategy, judge: Callable[[object], "Verdict | bool"],
               on_step: Callable[[TraceStep], None] | None = None) -> Trace:
    """Run `strategy` to the end, `judge(experiment)` deciding each run (True / Verdict.bad = bad); `on_step`
    sees each step as it ends (progress lines). A list experiment is recorded as a tuple."""
    steps: list[TraceStep] = []
    while (experiment := strategy.next()) is not None:
        phase = strategy.phase
        t0 = time.perf_counter()
        verdict = judge(experiment)
        seconds = getattr(strategy, "seconds", None)
        if seconds is not None:  # a Search's ETA (`Search.eta`) reads how long its runs took
            seconds.append(time.perf_counter() - t0)
        verdict = verdict if isinstance(verdict, Verdict) else Verdict(verdict)
        bad = _verdict(verdict.bad)
        strategy.tell(bad)
        shown = tuple(experiment) if isinstance(experiment, list) else experiment
        step = TraceStep(len(steps) + 1, phase, shown, bad, verdict.figures, time.perf_counter() - t0)
        steps.append(step)
        if on_step:
            on_step(step)
    return Trace(tuple(steps), strategy.result, strategy.status)


def keep_step_json(step: TraceStep) -> dict:
    """The JSON fields every keep-set search's step starts with (keep-fp32, fix): the set run, its size, the phase
    that asked for it and the verdict."""
    return {"keep": list(step.experiment), "size": len(step.experiment), "phase": step.phase, "passed": step.passed}


class Search:
    """The next()/tell() machinery; subclasses write the search as a generator (`_run`) that asks for each
    experiment through `_test` (which caches verdicts by `_key`, so an experiment is never run twice): the cures'
    searches here, and a sweep's shape-range search (`sweep/shape_range/search.py`)."""

    def __init__(self, max_runs: int | None = None) -> None:
        self.history: list = []
        self.status = "running"
        self._max_runs = max_runs
        self.seconds: list[float] = []  # each run's wall, as `run_search` times it (`eta`)
        self._cache: dict = {}
        self._result = None
        self._pending: tuple[object, str] | None = None  # (experiment, phase)
        self._gen = self._run()
        self._advance(None)

    def next(self):
        """The experiment to run next (asking twice without `tell` gives the same one); None when finished."""
        return None if self._pending is None else self._pending[0]

    @property
    def phase(self) -> str | None:
        """The phase that asks for the pending experiment; None when finished."""
        return None if self._pending is None else self._pending[1]

    @property
    def result(self):
        return self._result

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

    def runs_left(self) -> int | None:
        """At most how many runs the search still makes, the pending one included, from how far it has come;
        None where the strategy does not say (subclasses that can, do)."""
        return None

    def eta(self) -> str:
        """What a progress line says of the work left: "est. ≤ N more run(s), ~T" (T at the median run so far), or
        "" where nothing can be said yet. An estimate: `runs_left` bounds a judge whose verdicts are monotone (a
        set that passes still passes with more in it); one that is not can make a search run past it, and the
        next line's figure is read again from where the search is then."""
        left = None if self._pending is None else self.runs_left()
        if left is None:
            return ""
        if self._max_runs is not None:
            left = min(left, max(self._max_runs - len(self.history), 0))
        words = f"est. ≤ {left} more run(s)"
        if self.seconds:
            total = left * sorted(self.seconds)[len(self.seconds) // 2]
            words += f", ~{total / 60:.0f} min" if total >= 90 else f", ~{total:.0f} s"
        return words

    def _advance(self, verdict) -> None:
        try:
            self._pending = self._gen.send(verdict)
        except StopIteration:
            self._pending = None

    def _test(self, experiment, phase: str):
        """The verdict of `experiment`: cached, else asked for (False, unasked, once `max_runs` runs are made)."""
        key = self._key(experiment)
        if key not in self._cache:
            if self._max_runs is not None and len(self.history) >= self._max_runs:
                return False
            bad = yield experiment, phase
            self._cache[key] = bad
            self.history.append(self._record(experiment, bad, phase))
        return self._cache[key]

    def _key(self, experiment) -> Hashable:
        return experiment

    def _record(self, experiment, bad: bool, phase: str):
        return Tried(experiment, bad, phase)

    def _run(self) -> Generator[tuple[object, str], object, None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield ()


SCAN_FROM = 16  # a prefix longer than this is minimised by the scan, not ddmin (`KeepFp32Search._minimize`)


class KeepFp32Search(Search):
    """A small set of nodes to keep in FP32 so that an FP16 model passes; `next()` gives the keep set to try.

    `candidates` are ranked, most likely needed first (see `cp_debug.bisect.cures.keep_fp32.rank_candidates`).
    Phases, each experiment run once (verdicts are cached by set, so a set is never run twice):
      1. none: keep nothing. Passing → status "not_needed", result ().
      2. all: keep every candidate. Failing → status "impossible", result None: these candidates cannot fix it.
      3. prefix: binary search for the shortest passing prefix of the ranked list, ⌈log2 n⌉ runs at most.
      4. minimize: ddmin (Zeller) over a prefix of up to `SCAN_FROM` nodes, removing complements of ever finer
         chunks, down to single nodes; over a longer one a scan (`_minimize` says which and why); no run at all
         when the prefix has one node (∅ already failed).
    Guarantees, observed rather than assumed: `result` passed, and removing any single node from it failed
    (1-minimal) — every such subset was run, in this search, exactly. Not guaranteed: the smallest set overall
    (that needs exponentially many runs). Runs: 2 + ⌈log2 n⌉ + the minimising runs for a prefix of k nodes — about
    m·log2 k for m needed nodes; where most are needed k(k − 1)/2 + k at worst up to `SCAN_FROM`, about 2k past it.
    """

    def __init__(self, candidates: Sequence[str]):
        self.candidates = _unique(candidates, "candidates")
        self._plan: tuple = ("start", len(self.candidates))  # where `runs_left` reads how far the search is
        super().__init__()

    def runs_left(self) -> int | None:
        """The docstring's run counts as a bound from the phase reached (for a monotone judge: `Search.eta`): the
        prefix's ⌈log2⌉ of its span, ddmin's k(k − 1)/2 + k, the scan's 3 runs a node still ahead of it (each pass
        removes one, each failure at a node halves its chunk or steps on) and one confirming run a node of the set
        it leaves."""
        kind, *at = self._plan
        if kind == "start":
            return 2 + _log2(at[0]) + _minimizing(at[0])
        if kind == "prefix":
            return _log2(at[0]) + _minimizing(at[1])
        if kind == "ddmin":
            return at[0] * (at[0] - 1) // 2 + at[0]
        if kind == "scan":
            return 3 * at[0] + _log2(at[1]) + at[1]
        return at[0]  # confirm

    def next(self) -> list[str] | None:
        """The keep set to try next (asking twice without `tell` gives the same one); None when finished."""
        experiment = super().next()
        return None if experiment is None else list(experiment)

    @property
    def result(self) -> tuple[str, ...] | None:
        """The keep set found (in candidate order); () when none is needed; None when impossible or running."""
        return self._result

    def _test(self, keep: Sequence[str], phase: str):
        return (yield from super()._test(tuple(keep), phase))

    def _key(self, experiment) -> frozenset[str]:
        return frozenset(experiment)

    def _record(self, experiment, bad: bool, phase: str) -> KeepStep:
        return KeepStep(experiment, bad, phase)

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
            self._plan = ("prefix", hi - lo, hi)
            if (yield from self._test(c[:mid], "prefix")):
                lo = mid
            else:
                hi = mid
        keep = yield from self._minimize(list(c[:hi]))
        self.status, self._result = "found", tuple(keep)

    def _minimize(self, keep: list[str]):
        """ddmin over a prefix of up to `SCAN_FROM` nodes (the intervention's sets, a keep-fp32 search whose ranking
        is good: its complements first, a few runs); over a longer one a scan that removes ever larger chunks while
        their removal passes and halves a chunk whose removal fails, down to a single node, which is then needed and
        stepped over (`_shrink`), then each single removal from the set found that was not run exactly is run
        (`_confirm`), so `result` is 1-minimal as observed, not as assumed. The scan costs about m·log2(k/m) runs
        for m needed nodes of k, about 2k where most are needed; ddmin's restarts cost k²/2 there (a user's INT8
        ALBERT: 60-odd of 84 MatMuls needed, `fix` stopped after 183 runs at 63 nodes; 84 / 60 simulated: 660 runs
        against the scan's 170)."""
        if len(keep) <= SCAN_FROM:
            return (yield from self._ddmin(keep))
        keep = yield from self._shrink(keep)
        return (yield from self._confirm(keep))

    def _ddmin(self, keep: list[str]):
        """ddmin, complements only: the set shrinks while some complement passes; ends 1-minimal."""
        g = 2
        while len(keep) >= 2:
            self._plan = ("ddmin", len(keep))
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

    def _shrink(self, keep: list[str]):
        i, size = 0, max(1, len(keep) // 2)
        while i < len(keep) and len(keep) >= 2:
            self._plan = ("scan", len(keep) - i, len(keep))
            size = min(size, len(keep) - i)
            rest = keep[:i] + keep[i + size:]
            if not (yield from self._test(rest, "minimize")):
                keep, size = rest, 2 * size  # the scan stays at i
            elif size > 1:
                size //= 2
            else:
                i += 1  # keep[i] is needed (its removal from a superset of what stays failed)
        return keep

    def _confirm(self, keep: list[str]):
        shrunk = True
        while shrunk and len(keep) >= 2:
            self._plan = ("confirm", len(keep))
            shrunk = False
            for x in keep:
                rest = [y for y in keep if y != x]
                if not (yield from self._test(rest, "minimize")):
                    keep, shrunk = rest, True
                    break
        return keep  # one node left: removing it gives ∅, which failed in phase 1


def with_eta(text: str, search: Search) -> str:
    """A search run's progress line with what is left of the search (`Search.eta`), where it can say."""
    left = search.eta()
    return f"{text} ({left})" if left else text


def _log2(n: int) -> int:
    """⌈log2 n⌉ (0 for n ≤ 1): the halvings of a span of n."""
    return max(int(n) - 1, 0).bit_length()


def _minimizing(k: int) -> int:
    """At most the runs `KeepFp32Search._minimize` makes over a prefix of k nodes (`runs_left`'s terms)."""
    return k * (k - 1) // 2 + k if k <= SCAN_FROM else 4 * k + _log2(k)


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
