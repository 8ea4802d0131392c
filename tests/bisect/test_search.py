"""Search strategies against oracle functions: results, run counts and edge cases, without any model."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from cp_debug.bisect.search import ChunkedMarks, KeepFp32Search, KeepStep, MarkBisect, MarkStep


def drive(search, oracle):
    """Run the search to the end; `oracle(experiment)` gives the verdict (True = bad)."""
    seen = []
    while (experiment := search.next()) is not None:
        seen.append(experiment)
        search.tell(oracle(experiment))
    return seen


def names(n: int) -> list[str]:
    return [f"t{i}" for i in range(n)]


# -- MarkBisect ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 100])
def test_mark_bisect_finds_the_first_bad_probe_in_at_most_log2_runs(n):
    order = names(n)
    for k in range(n + 1):  # k == n: nothing is bad
        s = MarkBisect(order)
        seen = drive(s, lambda marked: int(marked[0][1:]) >= k)
        assert all(len(m) == 1 for m in seen)  # one tensor marked per run
        assert s.result == (order[k] if k < n else None)
        assert s.status == ("found" if k < n else "clean")
        assert s.last_good == (order[k - 1] if k > 0 else None)
        assert s.runs == len(seen) == len(s.history) <= math.ceil(math.log2(n)) + 1
        assert s.runs <= MarkBisect.max_runs(n) == math.ceil(math.log2(n + 1))


def test_mark_bisect_history_records_marked_tensor_and_verdict():
    s = MarkBisect(names(8))
    drive(s, lambda m: int(m[0][1:]) >= 5)
    assert s.history == [MarkStep(("t3",), (False,)), MarkStep(("t5",), (True,)), MarkStep(("t4",), (False,))]
    assert s.result == "t5" and s.done and s.next() is None


@pytest.mark.parametrize("per_run", [2, 3, 4])
def test_k_ary_marking_uses_fewer_runs_and_bounded_marks(per_run):
    n = 60
    for k in range(n + 1):
        s = MarkBisect(names(n), per_run=per_run)
        seen = drive(s, lambda marked: [int(m[1:]) >= k for m in marked])
        assert s.result == (f"t{k}" if k < n else None)
        assert all(1 <= len(m) <= per_run for m in seen)
        assert s.runs <= MarkBisect.max_runs(n, per_run) == math.ceil(math.log(n + 1, per_run + 1) - 1e-9)
    assert MarkBisect.max_runs(60, 3) < MarkBisect.max_runs(60, 1)


def test_mark_bisect_without_monotone_badness_still_returns_a_good_to_bad_transition():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 30)
        bad = [rng.random() < 0.4 for _ in range(n)]
        s = MarkBisect(names(n))
        drive(s, lambda m: bad[int(m[0][1:])])
        if s.result is None:
            continue
        i = int(s.result[1:])
        assert bad[i] and (i == 0 or not bad[i - 1])
        assert s.last_good == (f"t{i - 1}" if i else None)


def test_mark_bisect_edge_cases_and_protocol_errors():
    empty = MarkBisect([])
    assert empty.done and empty.next() is None and empty.result is None and empty.runs == 0
    assert empty.status == "clean"
    with pytest.raises(RuntimeError, match="without a pending experiment"):
        empty.tell(True)
    with pytest.raises(ValueError, match="more than once"):
        MarkBisect(["a", "b", "a"])
    with pytest.raises(ValueError, match="at least 1"):
        MarkBisect(["a"], per_run=0)
    s = MarkBisect(names(10), per_run=2)
    assert s.next() == s.next()  # asking again gives the same experiment
    with pytest.raises(ValueError, match="needs a verdict for each"):
        s.tell(True)
    with pytest.raises(ValueError, match="2 marked"):
        s.tell([True])
    with pytest.raises(ValueError, match="lacks a verdict"):
        s.tell({s.next()[0]: True})
    s.tell({m: False for m in s.next()})  # a name → verdict map works too
    assert s.runs == 1


# -- ChunkedMarks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,per_run", [(10, 3), (9, 3), (1, 5), (7, 1)])
def test_chunked_marks_cover_every_probe_in_bounded_chunks(n, per_run):
    bad_from = n // 2
    s = ChunkedMarks(names(n), per_run)
    seen = drive(s, lambda chunk: [int(m[1:]) >= bad_from for m in chunk])
    assert [m for chunk in seen for m in chunk] == names(n)  # every probe once, in order
    assert all(len(chunk) <= per_run for chunk in seen)
    assert s.runs == ChunkedMarks.max_runs(n, per_run) == math.ceil(n / per_run)
    assert s.result == f"t{bad_from}"
    assert s.verdicts == {f"t{i}": i >= bad_from for i in range(n)}


def test_chunked_marks_can_stop_at_the_first_bad_chunk():
    s = ChunkedMarks(names(10), 3, stop_at_first=True)
    drive(s, lambda chunk: [m == "t4" for m in chunk])
    assert s.runs == 2 and s.result == "t4" and s.status == "found"
    assert set(s.verdicts) == {"t0", "t1", "t2", "t3", "t4", "t5"}
    clean = ChunkedMarks(names(4), 2)
    drive(clean, lambda chunk: [False] * len(chunk))
    assert clean.result is None and clean.status == "clean" and clean.runs == 2
    assert ChunkedMarks([], 4).done


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
    # 2 + 3 prefix runs + 4 ddmin runs on (a, b, c): {b,c} {a} fail; {a,c} passes; {c} fails ({a} is cached)
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

    with pytest.raises(TypeError, match="one bool"):
        KeepFp32Search(["a"]).tell([True])
    with pytest.raises(TypeError, match="needs a verdict"):
        KeepFp32Search(["a"]).tell(None)
    with pytest.raises(ValueError, match="more than once"):
        KeepFp32Search(["a", "a"])
