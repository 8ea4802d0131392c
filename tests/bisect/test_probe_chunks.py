"""A whole-stage ONNX candidate whose probes do not fit half the memory budget runs once per chunk of probes:
the same verdicts and numbers (up to what exposing other outputs changes in ORT's fusions)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cp_debug.bisect.stages import stage_whole
from tests.bisect.test_planted_faults import run


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """frozen_branch on torch,ort-cpu-fp16 with a chunk budget of 0 bytes (a session per chunk), run once for the
    two tests that compare other runs with it: its report, the chunks `probe_chunks` made, and (spec, number of
    probes) of every stage runner made."""
    x = -np.abs(np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)) - 3.0
    inputs = tmp_path_factory.mktemp("chunks") / "in.npz"
    np.savez(inputs, x=x)  # the branch the exporter froze: the ONNX candidate diverges at body.0
    seen, made = [], []
    real_chunks, real_make = stage_whole.probe_chunks, stage_whole.make_stage_runner
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage_whole, "CHUNK_BYTES", 0)
        mp.setattr(stage_whole, "probe_chunks", lambda *a: seen.append(real_chunks(*a)) or seen[-1])
        mp.setattr(stage_whole, "make_stage_runner",
                   lambda *a, **k: made.append((str(a[1]), len(a[3]))) or real_make(*a, **k))
        report = run("frozen_branch", "torch,ort-cpu-fp16", inputs=inputs)
    return SimpleNamespace(report=report, chunks=seen, runners=made, inputs=inputs)


def test_chunked_candidate_runs_give_the_one_run_results(chunked):
    whole = run("frozen_branch", "torch,ort-cpu-fp16", inputs=chunked.inputs)
    seen = chunked.chunks
    assert max(len(c) for c in seen) > 1 and all(len(ch) == 1 for c in seen for ch in c)  # one probe a run
    a, b = whole.candidates[0], chunked.report.candidates[0]
    assert b.root_cause.probe == a.root_cause.probe == "body.0" and b.first_divergent == a.first_divergent
    ra = {r.probe: r for r in a.results}
    for r in b.results:
        assert r.status == ra[r.probe].status, r.probe
        if r.diff is not None:
            assert r.diff.rel_rmse == pytest.approx(ra[r.probe].diff.rel_rmse, rel=0.05, abs=1e-6), r.probe


def test_int8_candidates_are_never_chunked(monkeypatch):
    """ORT's quantizer calibrates on what a run exposes: one run for all probes keeps its calibration whole."""
    monkeypatch.setattr(stage_whole, "CHUNK_BYTES", 0)
    seen = []
    real = stage_whole.probe_chunks
    monkeypatch.setattr(stage_whole, "probe_chunks", lambda *a: seen.append(real(*a)) or seen[-1])
    run("int8_hostile", "torch,ort-cpu-int8")
    assert seen and all(len(c) == 1 for c in seen)


def test_one_session_read_a_chunk_at_a_time_gives_the_chunked_results(chunked, monkeypatch):
    """Where every probe fits in device memory (CUDA: `_fits_on_device`), one session exposes all of them and each
    run copies one chunk out: the same verdicts and numbers as a session per chunk. Forced here on the CPU."""
    per_chunk = [n for spec, n in chunked.runners if "fp16" in spec]
    made = []  # (spec, probes) of every stage runner made
    real_make = stage_whole.make_stage_runner
    monkeypatch.setattr(stage_whole, "CHUNK_BYTES", 0)
    monkeypatch.setattr(stage_whole, "make_stage_runner",
                        lambda *a, **k: made.append((str(a[1]), len(a[3]))) or real_make(*a, **k))
    monkeypatch.setattr(stage_whole, "_fits_on_device", lambda *a: True)
    shared = run("frozen_branch", "torch,ort-cpu-fp16", inputs=chunked.inputs)
    one = [n for spec, n in made if "fp16" in spec]
    assert max(per_chunk) == 1 and len(per_chunk) > len(one) and max(one) > 1  # one session, all probes exposed
    a, b = chunked.report.candidates[0], shared.candidates[0]
    assert b.root_cause.probe == a.root_cause.probe == "body.0" and b.first_divergent == a.first_divergent
    ra = {r.probe: r for r in a.results}
    assert {r.probe for r in b.results} == set(ra)
    for r in b.results:
        assert r.status == ra[r.probe].status, r.probe
        if r.diff is not None:
            assert r.diff.rel_rmse == pytest.approx(ra[r.probe].diff.rel_rmse, rel=0.05, abs=1e-6), r.probe
