"""Local errors measured side by side — a stage's segments joined in one model whose every boundary is an input fed
the reference's value (`graph.grouped.side_by_side`), one session and one run for all of them — equal the ones each
segment gives alone, a session per segment (`local_error.segment_errors`), on the tiny preset's real exports."""

from __future__ import annotations

import math

import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions

CAND = "ort-cpu-fp16"
FIELDS = ("local_max_abs", "local_rel_rmse")


def _bisect(alone: bool) -> dict:
    from cp_debug.bisect.stages import local_error
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject("tiny", random_weights=True, trace_side=64)
    share = local_error.SIDE_BY_SIDE_SHARE, local_error.SIDE_BY_SIDE_MIN_BYTES
    if alone:  # every group's budget 0 bytes: each segment a group, run alone (as before the groups)
        local_error.SIDE_BY_SIDE_SHARE, local_error.SIDE_BY_SIDE_MIN_BYTES = 1 << 62, 0
    try:
        return BisectEngine(subject, ("torch", BackendSpec.parse("torch")), [(CAND, BackendSpec.parse(CAND))],
                            BisectOptions(level="all", lockstep=False, device_budget_mb=1024)).run().to_json()
    finally:
        local_error.SIDE_BY_SIDE_SHARE, local_error.SIDE_BY_SIDE_MIN_BYTES = share


@pytest.mark.long  # two tiny-preset bisects at --level all (~12 s on two idle cores): .ci/run's second step
@pytest.mark.slow
def test_side_by_side_local_errors_equal_each_segment_alone():
    joined, alone = _bisect(alone=False), _bisect(alone=True)
    sessions = {k: {st: (v["local_error_segments"], v["local_error_sessions"]) for st, v in d.items()}
                for k, d in (("joined", joined["settings"]["backends"][CAND]),
                             ("alone", alone["settings"]["backends"][CAND]))}
    for stage, (segments, n) in sessions["alone"].items():
        assert n == segments, (stage, sessions)  # alone: a session per segment
    assert sum(n for _, n in sessions["joined"].values()) < sum(n for _, n in sessions["alone"].values()), sessions
    rows = {k: {r["probe"]: r for r in d["results"][CAND]} for k, d in (("joined", joined), ("alone", alone))}
    measured = [p for p, r in rows["alone"].items() if r["local_max_abs"] is not None]
    assert len(measured) >= 10, "the tiny preset at --level all measures local errors"
    for p in measured:
        a, j = rows["alone"][p], rows["joined"][p]
        assert j["local_status"] == a["local_status"], p
        for f in FIELDS:  # one session or many: ONNX Runtime's kernels may pick other blockings (AMD, Intel)
            assert math.isclose(j[f], a[f], rel_tol=1e-3, abs_tol=1e-6), (p, f, j[f], a[f])
    assert joined["root_cause"][CAND] == alone["root_cause"][CAND]
    assert joined["outputs_within_tolerance"][CAND] == alone["outputs_within_tolerance"][CAND]
