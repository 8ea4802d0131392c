"""A whole-stage ONNX candidate whose probes do not fit half the memory budget runs once per chunk of probes:
the same verdicts and numbers (up to what exposing other outputs changes in ORT's fusions)."""

from __future__ import annotations

import pytest

from cp_debug.bisect import stage_whole
from tests.bisect.test_planted_faults import run


def test_chunked_candidate_runs_give_the_one_run_results(monkeypatch):
    whole = run("int8_hostile", "torch,ort-cpu-int8")
    monkeypatch.setattr(stage_whole, "MIN_CHUNK_BYTES", 0)
    seen = []
    real = stage_whole.probe_chunks
    monkeypatch.setattr(stage_whole, "probe_chunks", lambda *a: seen.append(real(*a)) or seen[-1])
    chunked = run("int8_hostile", "torch,ort-cpu-int8", memory_budget_mb=0)
    assert max(len(c) for c in seen) > 1 and all(len(ch) == 1 for c in seen for ch in c)  # one probe a run
    a, b = whole.candidates[0], chunked.candidates[0]
    assert b.root_cause.probe == a.root_cause.probe and b.first_divergent == a.first_divergent
    ra = {r.probe: r for r in a.results}
    for r in b.results:
        assert r.status == ra[r.probe].status, r.probe
        if r.diff is not None:
            assert r.diff.rel_rmse == pytest.approx(ra[r.probe].diff.rel_rmse, rel=0.05, abs=1e-6), r.probe
