"""A flip at a tie said with its margin (issue 115, twelfth stop, item 1; bisect/findings/decisions.py): where a
decision flips, the report says how close the reference was to the tie — its top-two gap (a Sigmoid's distance from
0.5) at the flipped element — against the candidate's error there and the RMS error its precision's budget allows
over the output, so "a near tie broken by rounding" reads apart from "no near tie". A user's metric returning one
number says its change and that no margin is known.

tests/bisect/flip_margin_models.py: rows 3 and 11 flip in FP16 in both files; by hand (numpy, float16 arithmetic as
the graph's): `tie`'s logits 1.0001 and 1.0003 both round to 1.0 (the probabilities 9.8e-5 apart), `fault`'s 0.6 and
1.4 both read 2001 at the offset 2000 (0.374 apart). Before: "the decision changes: --metric …" said no margin, and
without a metric the tie was within precision (exit 0), the fault degraded (exit 4) by its outputs' error alone, the
margin in the JSON only; now both degraded, the decision said first with its margin."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.bisect.flip_margin_models import TIED, build, sample
from tests.cli_run import cpdebug

MODELS = "tests/bisect/flip_margin_models.py"


def _bisect(tmp_path, off: float, logits: bool, *metric: str) -> tuple[int, dict]:
    onnx.save(build(off, logits), tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=sample(off))
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   "ort-cpu,ort-cpu-fp16", *metric, "--json", tmp_path / "r.json", "--quiet")
    return proc.returncode, json.loads((tmp_path / "r.json").read_text())


def _by_hand(off: float) -> tuple[list[int], float]:
    """The rows float16 flips, and the reference's smallest top-two gap there (numpy's float16 arithmetic)."""
    x = sample(off)
    z = x.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    h = ((x.astype(np.float16) + np.float16(off)) - np.float16(off)).astype(np.float64)
    rows = np.nonzero(p.argmax(-1) != h.argmax(-1))[0].tolist()
    top = np.sort(p[rows], -1)
    return rows, float((top[:, -1] - top[:, -2]).min())


@pytest.mark.parametrize("off,tie", [(0.0, True), (2000.0, False)])
def test_an_argmax_flip_says_its_margin_against_the_error_and_the_budget(tmp_path, off, tie):
    rows, gap = _by_hand(off)
    assert rows == list(TIED)
    code, rep = _bisect(tmp_path, off, False)
    # no --metric: degraded (the reading at argmax is cp_debug's, not the user's decision), where a flip is no near
    # tie; near ties that rounding broke are said and leave the outcome to the errors (within precision here)
    want = ("within_precision", 0) if tie else ("degraded", 4)
    assert (rep["outcomes"]["ort-cpu-fp16"], code) == want, rep["outcome_reasons"]
    d, = rep["decisions"]["ort-cpu-fp16"]
    assert d["flipped"] == 2 and d["margin"] == pytest.approx(gap, rel=1e-3), d
    assert d["error"] >= d["margin"] > 0 and d["budget"] > 0 and d["tie"] is tie, d
    words = ("a near tie broken by rounding" if tie else
             f"no near tie: the margin is {d['margin'] / d['budget']:.3g}× the RMS error fp16's budget allows")
    assert words in d["summary"] and f"{d['error']:.3g}" in d["summary"] and f"{d['budget']:.3g}" in d["summary"], d
    assert d["summary"] in rep["outcome_reasons"]["ort-cpu-fp16"]


def test_a_builtin_argmax_metric_says_the_margin_of_the_logits_it_reads(tmp_path):
    """`--metric top1` on logits (no Softmax): the rows of its first output read at their argmax give the margin."""
    for off, tie in ((0.0, True), (2000.0, False)):
        code, rep = _bisect(tmp_path, off, True, "--metric", "top1")
        assert code == 1, rep["outcome_reasons"]
        d, = rep["decisions"]["ort-cpu-fp16"]
        assert d["rule"] == "metric" and d["changed"] and d["tie"] is tie, d
        assert "where back read at its argmax: 2 of 32" in d["summary"], d
        assert d["margin"] == pytest.approx(0.0002 if tie else 0.8, rel=1e-2), d  # the logits' gap by hand


def test_a_users_metric_of_one_number_says_its_change(tmp_path):
    code, rep = _bisect(tmp_path, 2000.0, True, "--metric", f"{MODELS}:count")
    assert code == 1, rep["outcome_reasons"]
    d, = rep["decisions"]["ort-cpu-fp16"]
    assert d["margin"] is None and d["tie"] is None, d
    # by hand: rows 3 and 11 are class 1 in the reference, class 0 in float16
    assert (d["reference"], d["candidate"]) == (11.0, 9.0), d
    assert "the metric's value moved by 2: it returns one number, no margin to its threshold is known" in d[
        "summary"], d
