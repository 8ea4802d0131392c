"""Issue 72 item 4: a verdict says which graph it rests on, and a candidate that ran none of its requested precision
is `not_run_as_asked` (exit 3), where one that ran some of it (mixed) or all of it keeps its verdict."""

from __future__ import annotations

from cp_debug.backends.base import PrecisionReport
from cp_debug.backends.spec import parse_backends
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState
from cp_debug.bisect.verdict import _as_ran
from cp_debug.compare import noise
from cp_debug.compare.diff import Tolerance
from cp_debug.errors import ExitCode


def _state(effective: str, requested: str = "int8") -> CandidateState:
    (_, ref), (label, spec) = parse_backends(f"torch,ort-cpu-{requested}")
    st = CandidateState(label, spec, Tolerance(0.1, 0.1, 0.01))
    st.precision, st.judged_at = PrecisionReport(requested, effective, ()), requested
    return st


def test_a_candidate_that_ran_none_of_its_precision_is_not_run_as_asked():
    within = noise.Outcome.WITHIN_PRECISION
    out, why = _as_ran(_state("fp32"), within, "every probe's error ≤ 0.12× int8's expected rounding")
    assert out is noise.Outcome.NOT_RUN_AS_ASKED and out.exit_code == ExitCode.BACKEND == 3
    assert "did not run as asked" in why and "ran fp32, not int8" in why
    assert _as_ran(_state("fp32", "fp16"), within, "ok")[0] is noise.Outcome.NOT_RUN_AS_ASKED
    for healthy in ("mixed", "int8", "unknown"):  # some INT8 kernels ran, or it cannot tell: the verdict stands
        assert _as_ran(_state(healthy), within, "ok")[0] is within
    assert _as_ran(_state("fp32", "fp32"), within, "ok")[0] is within
    assert noise.worst([noise.Outcome.DIVERGED, noise.Outcome.NOT_RUN_AS_ASKED]) is noise.Outcome.NOT_RUN_AS_ASKED


def test_the_verdict_rests_on_the_graph_as_deployed_where_probes_kept_int8_kernels_unfused():
    st = _state("fp32")  # the probed graph: exposing probes kept ORT from fusing every INT8 kernel
    st.deployed_precision = PrecisionReport("int8", "int8", ())
    j = noise.Judgement(noise.Outcome.DEGRADED, 0.1, 2.5, "rel. RMS error 2.5× int8's budget")
    st.deployed["output0"] = ProbeResult("output0", "diverged", judgement=j)
    out, why = _as_ran(st, noise.Outcome.WITHIN_PRECISION, "every probe within")
    assert out is noise.Outcome.DEGRADED  # the deployed graph ran INT8: judged, not refused
    assert why.startswith("rests on the graph as deployed (no probes exposed, ran int8)")
    # issue 117: each "ran" says of which graph it is (the verdict said "ran int8" and "ran fp32" unexplained)
    assert "the probed graph (ran fp32: probes kept ORT from fusing INT8 kernels" in why
    st.deployed_precision = PrecisionReport("int8", "fp32", ())  # as deployed it runs no INT8 kernel either
    assert _as_ran(st, noise.Outcome.WITHIN_PRECISION, "ok")[0] is noise.Outcome.NOT_RUN_AS_ASKED


def test_the_precision_line_says_which_graph_ran_what():
    from cp_debug.bisect.result import CandidateResult
    from cp_debug.report._format import precision_line

    cand = CandidateResult("ort-cpu-int8", "ort-cpu-int8", [], precision={"requested": "int8", "effective": "fp32",
                                                                        "notes": []},
                           deployed={"precision": {"requested": "int8", "effective": "int8", "notes": []}})
    line = precision_line(cand)
    assert line == "requested int8, ran fp32 with its probes exposed (the graph as deployed ran int8)", line
    same = CandidateResult("ort-cpu-int8", "ort-cpu-int8", [], precision={"requested": "int8", "effective": "int8"})
    assert precision_line(same) == "ran int8"
