"""Search strategies against oracle functions: results, run counts and edge cases, without any model."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from cp_debug.bisect.search import KeepFp32Search, KeepStep


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
