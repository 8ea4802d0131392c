"""`cpdebug sweep --metric` (issue 115, item 3): the application's decision per sample, the reference's and each
candidate's, a sample whose decision changes counted as a flip and never within precision, the share of samples that
flip in the verdict and sweep.json; without a metric, Sigmoid outputs read at 0.5 as bisect reads them.

tests/samples/threshold_model.py plants a residue below float16's step at 1 on two of six samples: FP16's scores there
are 0.5 where FP32's are 0.500075 — a difference far inside FP16's expected rounding that flips score 0's decision."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug
from tests.samples import threshold_model

pytestmark = pytest.mark.long  # two sweeps of 6 samples: 10-12 s each on the shared 2-core machine

MODEL = threshold_model.__file__


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threshold")
    return threshold_model.write(folder), folder / "samples"


def test_a_sample_whose_metric_changes_is_a_flip_and_diverged(planted, tmp_path):
    path, samples = planted
    proc = cpdebug("sweep", "--onnx", path, "--inputs", samples, "--out", tmp_path / "s", "--bisect-top", "0",
                   "--metric", f"{MODEL}:kept", "--quiet")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "s" / "sweep.json").read_text())
    flips = doc["summary"]["decisions"]
    assert sorted(flips["tokens"]) == list(threshold_model.FLIPPED), flips
    assert flips["flipped"] == 2 and flips["samples"] == 6 and flips["share"] == pytest.approx(2 / 6), flips
    assert "flips on 2 of 6 samples (33 %)" in doc["verdict"], doc["verdict"]
    frames = {f["token"]: f for f in doc["frames"]}
    assert {f["token"] for f in doc["frames"][:2]} == set(threshold_model.FLIPPED)  # the flipped rank first
    for token, f in frames.items():
        d, = f["decisions"]["ort-cpu-fp16"]  # the metric's value per sample, the reference's and the candidate's
        assert d["rule"] == "metric" and d["changed"] == (token in threshold_model.FLIPPED), (token, d)
        assert d["held"] is (token not in threshold_model.FLIPPED), d  # a declared metric: held, or not
        if token in threshold_model.FLIPPED:
            assert d["candidate"] == d["reference"] - 1, d  # score 0 no longer kept
            assert f["status"] == "diverged" and "the decision changes" in f["outcome_reason"], f
        else:
            assert f["status"] == "within_precision", f  # the same numbers are within FP16's precision


def test_without_a_metric_the_sigmoid_is_read_at_half(planted, tmp_path):
    """The Sigmoid's output read at 0.5: the flips counted as decisions and said on each flipped sample with its margin
    against the candidate's error there and FP16's budget: a near tie broken by rounding — which leaves the sample's
    outcome to its errors (within precision), as bisect judges near ties without a declared metric; a flip that is no
    near tie would read degraded (tests/bisect/test_flip_margin.py)."""
    import cp_debug

    path, samples = planted
    report = cp_debug.sweep(str(path), str(samples), "ort-cpu,ort-cpu-fp16", bisect_top=0, out=tmp_path / "s")
    flips = report.doc["summary"]["decisions"]
    assert flips["rule"] == "scores at 0.5" and sorted(flips["tokens"]) == list(threshold_model.FLIPPED), flips
    assert report.doc["outcome"] == "within_precision", report.doc["verdict"]
    assert "flips on 2 of 6 samples" in report.doc["verdict"], report.doc["verdict"]
    for f in report.doc["frames"]:
        assert f["status"] == "within_precision", f
    f = next(f for f in report.doc["frames"] if f["token"] == threshold_model.FLIPPED[0])
    assert f["outcome_reason"].startswith("near ties only broke (no --metric declared"), f
    d, = f["decisions"]["ort-cpu-fp16"]
    assert d["rule"] == "threshold 0.5" and d["flipped"] == 1 and d["total"] == 4, d
    assert d["margin"] == pytest.approx(0.5000750 - 0.5, rel=1e-2), d  # the reference's distance to 0.5
    # the candidate's error there (the score moved across 0.5 by at least the margin), and the tie said
    assert d["error"] >= d["margin"] and d["tie"] is True and d["budget"] > d["margin"], d
    assert "a near tie broken by rounding" in d["summary"] and f"{d['error']:.3g}" in d["summary"], d


def test_a_declared_metric_that_holds_on_every_sample_is_said_held():
    """A `--metric` sweep whose metric flips on no sample says it held (the summary's words and `held`); without a
    metric no `held` is claimed."""
    from types import SimpleNamespace

    from cp_debug.sweep.samples import decision_flips

    frames = [{"token": t, "status": "within_precision", "decisions": {"c": [{"changed": False}]}} for t in "ab"]
    held = decision_flips(frames, SimpleNamespace(name="top1"), {})
    assert held["held"] is True and held["text"] == "the decision (--metric top1) held on all 2 samples", held
    frames[1]["decisions"]["c"][0]["changed"] = True
    flip = decision_flips(frames, SimpleNamespace(name="top1"), {})
    assert flip["held"] is False and "flips on 1 of 2 samples" in flip["text"], flip
    assert "held" not in decision_flips(frames, None, {"p": "Sigmoid"})
