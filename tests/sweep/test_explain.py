"""The worst frames' bisects stay typed until the JSON writer: a BisectReport per bisected frame (its root cause
and hint on the ranked frame), a FrameFailure with its one-line reason where the bisect could not run."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from cp_debug.bisect.result import BisectReport, CandidateResult, RootCause
from cp_debug.data.frames import Frame, InMemory, Scan
from cp_debug.errors import BadInputError
from cp_debug.sweep import explain
from cp_debug.sweep.rank import RankedFrame


def _Frame(token: str) -> Frame:
    return Frame(token, InMemory(Scan(np.zeros((4, 5), np.float32))))


def _ranked(token: str, rank: int) -> RankedFrame:
    return RankedFrame(token, rank - 1, rank, "diverged", None, 4, "local", "ort-cpu-fp16")


def test_bisects_and_failures_are_typed_and_the_report_is_written_whole(tmp_path, monkeypatch):
    report = BisectReport("torch", [CandidateResult("ort-cpu-fp16", "ort-cpu-fp16", [], first_divergent="x",
                                                    root_cause=RootCause("pts_neck.deblocks.0", "fp16 overflow"))], [])

    scans = []

    def bisect_frame(settings, points, candidate, truth=None):
        scans.append((points.source, points.file_format, len(points.points)))  # the frame's scan, in memory
        if settings.fail:
            raise BadInputError("the frame cannot be bisected\nsecond line")
        return report

    monkeypatch.setattr(explain, "bisect_frame", bisect_frame)
    ranked = [_ranked("a", 1), _ranked("b", 2)]
    frames = [_Frame("a"), _Frame("b")]
    step = lambda text: contextlib.nullcontext()  # noqa: E731
    from cp_debug.models.centerpoint.presets import get_preset

    settings = SimpleNamespace(preset="tiny", fail=False, config=lambda: get_preset("tiny"))
    opts = SimpleNamespace(settings=settings, bisect_top=1, out=tmp_path, runs_on=None)
    reports, out = explain.bisect_worst(opts, ranked, frames, step)
    assert reports == {"a": report} and scans == [("sweep frame a", "array", 4)]
    assert (out[0].bisected, out[0].root_cause, out[0].hint) == (True, "pts_neck.deblocks.0", "fp16 overflow")
    assert not out[1].bisected and out[1].root_cause is None
    assert json.loads((tmp_path / "bisect" / "a.json").read_text()) == json.loads(json.dumps(report.to_json()))
    assert explain.root_cause_counts(out) == {"bisected": 1, "counts": {"pts_neck.deblocks.0": 1},
                                             "text": "root cause `pts_neck.deblocks.0` on 1 of 1 bisected frames"}

    failing = SimpleNamespace(**{**vars(settings), "fail": True})
    opts = SimpleNamespace(settings=failing, bisect_top=2, out=tmp_path / "f", runs_on=None)
    reports, out = explain.bisect_worst(opts, ranked, frames, step)
    assert reports == {"a": explain.FrameFailure("a", "the frame cannot be bisected"),
                       "b": explain.FrameFailure("b", "the frame cannot be bisected")}
    assert reports["a"].to_json() == {"error": "the frame cannot be bisected"}
    assert not any(r.bisected for r in out) and not (tmp_path / "f").exists()


def test_a_frame_at_a_near_tie_several_layers_tip_counts_no_single_root_cause(tmp_path):
    """Issue 115: a bisected frame whose decision sits at a near tie two layers each tip alone (the intervention's
    `tipped_by`, as `tests/bisect/test_metric_tie.py` finds it) names no root to count, but the layers."""
    tie = RootCause("t0", "the decision sits at a near tie …", intervention={
        "confirmed": True, "tipped_by": ["t0", "t1"], "tie": "p read at its threshold 0.5: 1 of 4 decide otherwise"})
    report = BisectReport("ort-cpu", [CandidateResult("ort-cpu-fp16", "ort-cpu-fp16", [], root_cause=tie)], [])
    one = explain.bisected(tmp_path, _ranked("a", 1), report)
    assert (one.root_cause, one.near_tie, one.hint) == (None, ("t0", "t1"), tie.hint)
    rooted = replace(explain.bisected(tmp_path, _ranked("b", 2), report), root_cause="x", near_tie=())
    assert explain.root_cause_counts([one, rooted]) == {
        "bisected": 2, "counts": {"x": 1}, "near_tie": 1,
        "text": "root cause `x` on 1 of 2 bisected frames; no single root cause on 1 of 2 bisected frames (a decision "
                "at a near tie several layers each tip alone)"}
    assert tie.to_json()["near_tie"]["tipped_by"] == ["t0", "t1"] and "(t0, t1 each tip a near tie alone)" in tie.named
