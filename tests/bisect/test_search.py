"""Search strategies against oracle functions: results, run counts and edge cases, without any model."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from cp_debug.bisect.cures.search import KeepFp32Search, KeepStep, Trace, TraceStep, Verdict, run_search
from cp_debug.bisect.cures.window_search import RangeShrinkSearch, WindowGrowSearch


def drive(search, oracle):
    """Run the search to the end; `oracle(experiment)` gives the verdict (True = bad)."""
    seen = []
    while (experiment := search.next()) is not None:
        seen.append(experiment)
        search.tell(oracle(experiment))
    return seen


def names(n: int) -> list[str]:
    return [f"t{i}" for i in range(n)]


# -- KeepFp32Search -----------------------------------------------------------------------------------------
def needs(*required):
    """Oracle: the FP16 model fails (bad) unless every required node is kept in FP32."""
    return lambda keep: not set(required) <= set(keep)


def test_keep_search_finds_the_needed_pair_with_the_documented_phases():
    cands = list("abcdefgh")
    s = KeepFp32Search(cands)
    drive(s, needs("a", "c"))
    assert s.status == "found" and s.result == ("a", "c")
    phases = [h.phase for h in s.history]
    assert phases[:2] == ["none", "all"]
    assert s.history[0] == KeepStep((), True, "none") and s.history[1] == KeepStep(tuple(cands), False, "all")
    prefix = [h for h in s.history if h.phase == "prefix"]
    assert len(prefix) <= math.ceil(math.log2(len(cands)))
    assert ("a", "b", "c") in [h.keep for h in prefix]  # the shortest passing prefix was tried
    assert phases == sorted(phases, key=["none", "all", "prefix", "minimize"].index)
    # 2 + 3 prefix runs + 4 minimising runs on (a, b, c): {b,c} {a} fail; {a,c} passes; {c} fails ({a} is cached)
    assert s.runs == 9
    assert len({frozenset(h.keep) for h in s.history}) == s.runs  # no set is ever run twice


def test_keep_search_top_ranked_single_culprit_needs_no_minimisation():
    s = KeepFp32Search(list("abcdefghijklmnop"))
    drive(s, needs("a"))
    assert s.result == ("a",)
    assert s.runs == 2 + 4  # none, all, then log2(16) prefix runs; {a} alone is 1-minimal since ∅ failed


@pytest.mark.parametrize("n", range(0, 7))
def test_keep_search_is_exact_for_every_required_set(n):
    """Where passing means 'every required node kept', the 1-minimal set found is exactly the required one."""
    cands = names(n)
    for r in range(n + 1):
        for required in itertools.combinations(cands, r):
            s = KeepFp32Search(cands)
            drive(s, needs(*required))
            if not required:
                assert s.status == "not_needed" and s.result == () and s.runs == 1
            else:
                assert s.status == "found" and set(s.result) == set(required)
                assert s.runs <= 2 + math.ceil(math.log2(n)) + n * (n - 1) // 2 + n


def test_keep_search_of_a_spread_error_costs_runs_in_proportion_to_the_set():
    """Most of the prefix needed (an error spread through the network: a user's INT8 ALBERT needed 60-odd of 84
    MatMuls left out): the search ends in about twice the prefix's length, where ddmin's restarts ran 600-700."""
    rng = random.Random(3)
    cands = names(84)
    for _ in range(5):
        required = rng.sample(cands, 60)
        s = KeepFp32Search(cands)
        drive(s, needs(*required))
        assert s.status == "found" and set(s.result) == set(required)
        assert s.runs <= 2 + math.ceil(math.log2(84)) + 3 * 84


def test_keep_search_result_passes_and_is_one_minimal_for_any_oracle():
    """Guarantees that hold without monotonicity: the result was seen passing, and each single removal failing."""
    rng = random.Random(1)
    for _ in range(500):
        n = rng.randint(0, 9)
        cands = names(n)
        fixes = [frozenset(rng.sample(cands, rng.randint(0, n))) for _ in range(rng.randint(1, 3))]
        flips = {frozenset(rng.sample(cands, rng.randint(0, n))): rng.random() < 0.5 for _ in range(4)}

        def passes(keep):
            k = frozenset(keep)
            return flips[k] if k in flips else any(f <= k for f in fixes)

        s = KeepFp32Search(cands)
        drive(s, lambda keep: not passes(keep))
        told = {frozenset(h.keep): h.bad for h in s.history}
        if s.status == "found":
            assert told[frozenset(s.result)] is False
            for x in s.result:
                assert told[frozenset(s.result) - {x}] is True
        elif s.status == "not_needed":
            assert told[frozenset()] is False
        else:
            assert s.status == "impossible" and told[frozenset(cands)] is True and s.result is None


def test_keep_search_edge_cases():
    nothing_fails = KeepFp32Search(list("abc"))
    drive(nothing_fails, lambda keep: False)
    assert nothing_fails.status == "not_needed" and nothing_fails.result == () and nothing_fails.runs == 1

    everything_fails = KeepFp32Search(list("abc"))  # even all candidates in FP32 fail
    drive(everything_fails, lambda keep: True)
    assert everything_fails.status == "impossible" and everything_fails.result is None
    assert [h.phase for h in everything_fails.history] == ["none", "all"]

    empty = KeepFp32Search([])
    drive(empty, lambda keep: True)
    assert empty.status == "impossible" and empty.runs == 1  # ∅ is also 'all': run once

    empty_ok = KeepFp32Search([])
    drive(empty_ok, lambda keep: False)
    assert empty_ok.status == "not_needed" and empty_ok.runs == 1

    all_needed = KeepFp32Search(list("abcd"))
    drive(all_needed, needs(*"abcd"))
    assert all_needed.result == tuple("abcd")

    with pytest.raises(RuntimeError, match="without a pending experiment"):
        nothing_fails.tell(True)
    pending = KeepFp32Search(list("ab"))
    assert pending.next() == pending.next() == []  # asking again gives the same experiment
    with pytest.raises(TypeError, match="one bool"):
        KeepFp32Search(["a"]).tell([True])
    with pytest.raises(TypeError, match="needs a verdict"):
        KeepFp32Search(["a"]).tell(None)
    with pytest.raises(ValueError, match="more than once"):
        KeepFp32Search(["a", "a"])


# -- the driver: any strategy against a judge, a typed trace -----------------------------------------------------
def test_the_driver_records_every_step_with_its_figures_and_seconds():
    cands = list("abcdefgh")
    seen = []
    judged = []

    def judge(keep):
        judged.append(tuple(keep))
        bad = not {"a", "c"} <= set(keep)
        return Verdict(bad, {"size": len(keep)})  # any typed value: kept as given

    strategy = KeepFp32Search(cands)
    trace = run_search(strategy, judge, on_step=seen.append)
    plain = KeepFp32Search(cands)
    drive(plain, needs("a", "c"))  # the same search run by hand: the driver changes nothing
    assert isinstance(trace, Trace) and trace.status == plain.status == "found"
    assert trace.result == plain.result == ("a", "c") and trace.runs == plain.runs == len(judged)
    assert list(trace.steps) == seen  # on_step saw each step as it ended
    assert [s.step for s in trace.steps] == list(range(1, trace.runs + 1))
    assert [(s.experiment, s.bad, s.phase) for s in trace.steps] == [(h.keep, h.bad, h.phase) for h in plain.history]
    assert [s.experiment for s in trace.steps] == judged  # a list experiment is recorded as a tuple
    assert all(s.figures == {"size": len(s.experiment)} and s.seconds >= 0 for s in trace.steps)
    assert trace.find(("c", "a"), frozenset).experiment == ("a", "c")
    with pytest.raises(KeyError):
        trace.find(("b",))


def test_the_driver_takes_a_plain_bool_and_refuses_a_missing_verdict():
    trace = run_search(KeepFp32Search(list("ab")), lambda keep: "a" not in keep)
    assert trace.result == ("a",) and all(isinstance(s, TraceStep) and s.figures is None for s in trace.steps)
    with pytest.raises(TypeError, match="needs a verdict"):
        run_search(KeepFp32Search(list("ab")), lambda keep: None)


# -- RangeShrinkSearch and WindowGrowSearch: the bug-report searches ---------------------------------------------
# (n, max_runs, oracle, result, ranges run) as the search written inside bugreport/window.shrink_segment ran them
def _contains(a, b):
    return lambda s, e: s <= a and b < e


def _long_around(a, w):
    return lambda s, e: e - s >= w and s <= a < e


SHRINK_CASES = [
    (10, 6, _contains(2, 3), (2, 4), [(0, 10), (0, 5), (0, 3), (0, 4), (2, 4), (3, 4)]),
    (30, 200, _long_around(17, 5), (13, 18),
     [(0, 30), (0, 15), (0, 23), (0, 19), (0, 17), (0, 18), (9, 18), (13, 18), (15, 18), (14, 18), (13, 16),
      (13, 17)]),
    (26, 200, _contains(17, 24), (17, 25),
     [(0, 26), (0, 13), (0, 20), (0, 23), (0, 25), (0, 24), (12, 25), (18, 25), (15, 25), (16, 25), (17, 25),
      (17, 21), (17, 23), (17, 24), (21, 25), (19, 25)]),
    (13, 200, _contains(1, 6), (1, 7),  # a second round: the new start lets the end move again
     [(0, 13), (0, 7), (0, 4), (0, 6), (3, 7), (1, 7), (2, 7), (1, 4), (1, 6), (4, 7)]),
    (28, 6, _contains(12, 25), (0, 26), [(0, 28), (0, 14), (0, 21), (0, 25), (0, 27), (0, 26)]),  # budget spent
    (1, 200, lambda s, e: False, None, [(0, 1)]),
]


@pytest.mark.parametrize("n, max_runs, oracle, result, ranges", SHRINK_CASES)
def test_range_shrink_runs_the_ranges_the_bug_report_search_ran(n, max_runs, oracle, result, ranges):
    search = RangeShrinkSearch(n, max_runs=max_runs)
    trace = run_search(search, lambda r: Verdict(oracle(*r), r[1] - r[0]))
    assert [s.experiment for s in trace.steps] == ranges and trace.result == result
    assert trace.status == ("found" if result else "not_diverging")
    assert trace.steps[0].phase == "whole" and {s.phase for s in trace.steps} <= {"whole", "end", "start"}
    assert all(s.figures == s.experiment[1] - s.experiment[0] for s in trace.steps)
    if result:
        assert trace.find(result).bad  # the range returned was run and seen to diverge (bad = diverges)
    assert trace.runs <= max_runs and len(set(ranges)) == len(ranges)  # each range run once


def test_range_shrink_returns_a_diverging_range_for_any_oracle():
    rng = random.Random(2)
    for _ in range(300):
        n = rng.randint(1, 40)
        bad = {(s, e) for s in range(n) for e in range(s + 1, n + 1) if rng.random() < 0.3} | {(0, n)}
        trace = run_search(RangeShrinkSearch(n), lambda r: r in bad)
        start, stop = trace.result
        assert trace.status == "found" and (start, stop) in bad and 0 <= start < stop <= n
        assert trace.runs == len({s.experiment for s in trace.steps})


# (n, k diverges while k <= last, windows merged by k // merge, result, windows run) as bugreport/grow ran them
GROW_CASES = [
    (20, 10, 1, 10, [0, 10, 15, 12, 11]),
    (20, 15, 3, 17, [0, 10, 15, 18]),  # 16 and 17 share a boundary with 15: not run again
    (18, 8, 1, 8, [0, 9, 4, 6, 7, 8]),
    (8, 8, 1, 8, [0, 4, 6, 7, 8]),
    (7, -1, 2, None, [0]),  # not even the whole stage diverges
]


@pytest.mark.parametrize("n, last, merge, result, windows", GROW_CASES)
def test_window_grow_runs_the_windows_the_bug_report_search_ran(n, last, merge, result, windows):
    search = WindowGrowSearch(n, key=lambda k: k // merge)
    trace = run_search(search, lambda k: Verdict(k <= last, f"window {k}"))
    assert [s.experiment for s in trace.steps] == windows and trace.result == result
    assert trace.status == ("found" if result is not None else "not_diverging")
    assert [s.phase for s in trace.steps] == ["whole"] + ["grow"] * (len(windows) - 1)
    assert [s.figures for s in trace.steps] == [f"window {k}" for k in windows]


def test_keep_search_runs_left_bounds_what_a_monotone_judge_makes_it_run():
    """Every progress line's `runs_left` is at least the runs the search then makes, on the ddmin and the scan
    paths (a judge whose passing sets stay passing with more kept), and its words carry the run time."""
    rng = random.Random(3)
    for _ in range(300):
        n = rng.choice([rng.randint(0, 12), rng.randint(17, 90)])
        cands = names(n)
        need = frozenset(rng.sample(cands, rng.randint(0, n)))
        s, said = KeepFp32Search(cands), []
        while (keep := s.next()) is not None:
            said.append((s.runs, s.runs_left()))
            s.seconds.append(2.0)
            s.tell(not need <= frozenset(keep))
        assert s.status in ("found", "not_needed") and all(s.runs - done <= left for done, left in said)
    s = KeepFp32Search(names(40))
    s.seconds.extend([1.5, 2.5, 2.0])
    assert s.eta() == f"est. ≤ {s.runs_left()} more run(s), ~{s.runs_left() * 2.0 / 60:.0f} min"
    drive(s, lambda keep: False)
    assert s.status == "not_needed" and s.eta() == ""
