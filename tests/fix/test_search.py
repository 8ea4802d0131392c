"""The fix search without models: targets, cheap rejection on the worst frames, and the 1-minimal result."""

from __future__ import annotations

import pytest

from cp_debug.errors import BadInputError
from cp_debug.fix.figures import Figures
from cp_debug.fix.search import search_fix, step_json
from cp_debug.fix.targets import FixTarget

CANDIDATES = ["a", "b", "c", "d", "e", "f"]
NEEDED = {"b", "e"}
# per-frame error with the needed nodes missing: frame 2 is the worst, frame 0 the mildest
FRAME_ERRORS = (0.2, 0.5, 0.9, 0.3)


class OracleJudge:
    """Frame i fails (error FRAME_ERRORS[i]) unless every needed node is kept; counts frame evaluations."""

    def __init__(self):
        self.frame_runs = 0
        self.calls = []

    def __call__(self, keep, indices, whole):
        self.frame_runs += len(indices)
        self.calls.append((tuple(keep), tuple(indices), whole))
        ok = NEEDED <= set(keep)
        errs = tuple(0.01 if ok else FRAME_ERRORS[i] for i in indices)
        lost = 0 if ok else len(indices)
        return Figures(tuple(indices), errs, ("heatmap",) * len(indices), lost, 0, None)


def test_cheap_rejection_on_the_worst_frames_keeps_the_answer_and_saves_frame_runs():
    target = FixTarget(tol=0.1)
    full = OracleJudge()
    plain = search_fix(CANDIDATES, full, target, len(FRAME_ERRORS), worst=0)
    cheap_judge = OracleJudge()
    cheap = search_fix(CANDIDATES, cheap_judge, target, len(FRAME_ERRORS), worst=1)
    assert plain.status == cheap.status == "found"
    assert set(plain.keep) == set(cheap.keep) == NEEDED
    assert cheap.frame_order[0] == 2  # the worst frame of the first (whole-set) run leads the order
    assert cheap.cheap_rejections > 0 and plain.cheap_rejections == 0
    assert cheap_judge.frame_runs < full.frame_runs
    # every rejection on the worst frame judged that frame alone; every pass was confirmed on all frames
    for step in cheap.steps:
        checked = step.figures.checked
        if checked != "all":
            assert step.figures.figures.frames == (2,) and not step.passed
        if step.passed:
            assert checked == "all" and step.figures.figures.frames == (0, 1, 2, 3)
    assert [s.phase for s in cheap.steps][:2] == ["none", "all"]
    doc = cheap.to_json()
    assert doc["keep"] == list(cheap.keep) and doc["runs"] == len(doc["steps"]) == cheap.runs


def test_frame_order_from_a_report_is_used_from_the_first_step():
    judge = OracleJudge()
    result = search_fix(CANDIDATES, judge, FixTarget(max_lost_boxes=0), 4, worst=2, frame_order=[3, 1, 0, 2])
    assert judge.calls[0][1] == (3, 1) and not judge.calls[0][2]  # the first run already cheap, on the given order
    assert set(result.keep) == NEEDED


def test_map_target_is_never_judged_on_a_subset():
    judge = OracleJudge()
    search_fix(CANDIDATES, judge, FixTarget(max_map_drop=0.1), 4, worst=1)
    assert all(whole and len(idx) == 4 for _, idx, whole in judge.calls)


def test_impossible_and_not_needed():
    never = search_fix(["a"], lambda keep, idx, whole: Figures(tuple(idx), (1.0,) * len(idx), ("reg",) * len(idx)),
                       FixTarget(tol=0.1), 2)
    assert never.status == "impossible" and never.keep is None and never.runs == 2
    fine = search_fix(["a"], lambda keep, idx, whole: Figures(tuple(idx), (0.0,) * len(idx), ("reg",) * len(idx)),
                      FixTarget(tol=0.1), 2)
    assert fine.status == "not_needed" and fine.keep == () and fine.runs == 1


def test_targets():
    t = FixTarget(tol=0.05, max_map_drop=0.01, max_lost_boxes=2)
    assert t.holds(0.05, 0.01, 2) and not t.holds(0.06, 0.0, 0) and not t.holds(0.0, 0.02, 0)
    assert not t.holds(0.0, 0.0, 3) and not t.holds(float("nan"))
    assert t.holds(0.01, None, None)  # figures not measured are not judged
    assert FixTarget.from_json(t.to_json()) == t
    assert t.describe() == "tol 0.05, max mAP drop 0.01, max lost boxes 2"
    for kwargs, match in (({}, "give a target"), ({"tol": 0}, "--max-rel-rmse"),
                          ({"max_map_drop": -1}, "--max-map-drop"), ({"max_lost_boxes": -1}, "--max-lost-boxes")):
        with pytest.raises(BadInputError, match=match):
            FixTarget(**kwargs)


def test_the_steps_are_those_the_fix_search_always_gave():
    """Every run, in order, with its phase, verdict and the frames judged (recorded from the search before it ran
    on the shared driver); on_step sees each step as the result lists it."""
    seen = []
    result = search_fix(CANDIDATES, OracleJudge(), FixTarget(tol=0.1), len(FRAME_ERRORS), worst=1,
                        on_step=seen.append)
    a = "all"
    w = "worst 1"
    assert [(s.experiment, s.phase, s.passed, s.figures.checked, s.figures.figures.frames)
            for s in result.steps] == [
        ((), "none", False, a, (0, 1, 2, 3)), (tuple("abcdef"), "all", True, a, (0, 1, 2, 3)),
        (tuple("abc"), "prefix", False, w, (2,)), (tuple("abcd"), "prefix", False, w, (2,)),
        (tuple("abcde"), "prefix", True, a, (0, 1, 2, 3)), (tuple("cde"), "minimize", False, w, (2,)),
        (tuple("ab"), "minimize", False, w, (2,)), (tuple("bcde"), "minimize", True, a, (0, 1, 2, 3)),
        (tuple("bde"), "minimize", True, a, (0, 1, 2, 3)), (tuple("de"), "minimize", False, w, (2,)),
        (("b",), "minimize", False, w, (2,)), (("b", "e"), "minimize", True, a, (0, 1, 2, 3)),
        (("e",), "minimize", False, w, (2,))]
    assert result.keep == ("b", "e") and result.frame_order == (2, 1, 3, 0) and result.cheap_rejections == 7
    assert list(result.steps) == seen and all(s.seconds >= 0 for s in seen)
    first = result.steps[0]
    assert result.to_json()["steps"][0] == {"keep": [], "size": 0, "phase": "none", "passed": False,
                                            "checked": "all", "seconds": round(first.seconds, 3),
                                            **first.figures.figures.to_json()}


def test_a_frame_whose_output_is_not_finite_is_the_worst_wherever_it_comes():
    """A NaN rel. RMSE (heads overflowed on that frame) fails any --max-rel-rmse, first frame or last."""
    from cp_debug.fix.figures import Figures
    from cp_debug.fix.targets import FixTarget

    for errors in ((float("nan"), 0.01), (0.01, float("nan"))):
        figures = Figures((0, 1), errors, ("heatmap", "heatmap"))
        assert figures.worst != figures.worst and not FixTarget(tol=0.05).holds(figures.worst)
    assert Figures((0, 1), (0.01, 0.02), ("reg", "rot")).worst == 0.02


class PrecisionJudge(OracleJudge):
    """As OracleJudge, with every frame judged by the noise model: diverged (overflow) on the worst frame, degraded
    on the others, unless every needed node is kept; the rel. RMSE stays 0.01 (a --max-rel-rmse would always hold)."""

    def __call__(self, keep, indices, whole):
        from cp_debug.compare.noise import Outcome
        from cp_debug.fix.figures import FrameVerdict

        f = super().__call__(keep, indices, whole)
        ok = NEEDED <= set(keep)
        bad = [Outcome.DIVERGED if i == 2 else Outcome.DEGRADED for i in indices]
        verdicts = tuple(FrameVerdict(Outcome.WITHIN_PRECISION if ok else o, "x") for o in bad)
        return Figures(f.frames, (0.01,) * len(indices), f.worst_output, verdicts=verdicts)


def test_within_precision_is_the_default_target_and_is_judged_frame_by_frame():
    from cp_debug.compare.noise import Outcome

    default = FixTarget.of()
    assert default.within_precision and default.per_frame and default.mode == "model"
    assert default.describe() == "within precision"
    assert not FixTarget.of(tol=0.05).within_precision  # a fixed criterion given keeps its old meaning, alone
    assert FixTarget.of(max_map_drop=0.01, mode="model").within_precision  # ... unless model mode is asked for
    assert FixTarget.of(tol=0.05, mode="fixed").mode == "fixed"
    with pytest.raises(BadInputError, match="give a target"):
        FixTarget.of(mode="fixed")
    with pytest.raises(BadInputError, match="--tolerance-mode"):
        FixTarget.of(mode="loose")
    assert default.holds(outcome=Outcome.WITHIN_PRECISION) and not default.holds(outcome=Outcome.DEGRADED)
    assert not default.holds(0.0, 0.0, 0, Outcome.DIVERGED)
    assert FixTarget(tol=0.05).holds(0.01, outcome=Outcome.DIVERGED)  # fixed: the noise model does not decide
    assert FixTarget.from_json({"tol": 0.05}) == FixTarget(tol=0.05)  # a fix.json written before the model
    assert FixTarget.from_json(default.to_json()) == default

    judge = PrecisionJudge()
    result = search_fix(CANDIDATES, judge, default, len(FRAME_ERRORS), worst=1, frame_order=[2, 0, 1, 3])
    assert result.status == "found" and set(result.keep) == NEEDED
    assert result.cheap_rejections > 0  # rejected on the worst frame alone, as for --max-rel-rmse
    assert search_fix(CANDIDATES, PrecisionJudge(), FixTarget(tol=0.1), 4).status == "not_needed"
    doc = step_json(result.steps[0])
    assert doc["outcome"] == "diverged" and doc["outcomes"] == ["diverged"] and doc["checked"] == "worst 1"
