"""A decision the candidate takes otherwise is measured and named as the decision (issue 84, item 2): the choices
compared member by member, the stage run again on the reference's choice, the outputs after it compared as sets where
they are sets; the verdict within precision (a choice between near ties is what the precision does, as a box at its
threshold is), never diverged, never a layer's rounding. Before, both read 'diverged', root cause `decoder`, "FP16
rounding introduced by this layer"."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("decision_models.py")


def _bisect(tmp_path, build: str):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{MODELS}:{build}", "-b", "torch,ort-cpu-fp16", "--json", out)
    return proc, json.loads(out.read_text())


def test_the_same_members_in_another_order_are_within_precision_as_sets(tmp_path):
    proc, report = _bisect(tmp_path, "build_order")
    assert proc.returncode == 0, report["outcome_reasons"]
    assert report["outcomes"]["ort-cpu-fp16"] == "within_precision"
    root = report["root_cause"]["ort-cpu-fp16"]
    assert root["probe"] == "decoder" and root["hint"].startswith("decision flip at TopK 'node_topk__1'"), root
    assert "FP16 rounding introduced" not in root["hint"]
    [flip] = report["decisions"]["ort-cpu-fp16"]
    assert (flip["kind"], flip["changed"], flip["k"], flip["reordered"], flip["replaced"]) == \
        ("decision_flip", True, 5, 2, 0), flip
    assert 5e-5 < flip["margin"] < 2e-4 and flip["step"] == 2 ** -10, flip  # the twins 1e-4 apart near 1.97
    assert flip["margin"] <= flip["error"] < 2e-3, flip  # the candidate's own error there crossed the margin
    assert sorted(flip["as_set"]["outputs"]) == ["output0", "output1"] and flip["as_set"]["noise_ratio"] < 1, flip
    assert flip["after"]["noise_ratio"] < 1, flip  # on the reference's choice, everything after it within fp16
    assert "the outputs compared as sets are within fp16's expected rounding" in \
        report["outcome_reasons"]["ort-cpu-fp16"]


def test_a_member_replaced_at_the_cut_is_named_and_within_precision(tmp_path):
    proc, report = _bisect(tmp_path, "build_cut")
    assert proc.returncode == 0, report["outcome_reasons"]
    reason = report["outcome_reasons"]["ort-cpu-fp16"]
    assert reason.startswith("the outputs differ by a decision flip alone, at TopK 'node_topk__1': 1 member(s) "
                             "replaced between near ties (margin 0.0001"), reason
    assert reason.endswith("what fp16 does at a near tie, no layer's rounding"), reason
    root = report["root_cause"]["ort-cpu-fp16"]
    assert root["probe"] == "decoder" and "1 of 5 member(s) replaced in 1 of 1 row(s)" in root["hint"], root
    [flip] = report["decisions"]["ort-cpu-fp16"]
    assert (flip["reordered"], flip["replaced"], flip["as_set"]) == (0, 1, None), flip
    # one story (`Finding.tie`): nothing restored brings the outputs back, and the graph's halves are said beside the
    # flip (before: "— no single layer: the error accumulates; …" after "the difference after it is the choice")
    assert root["intervention"]["spread"] is not None, root["intervention"]
    # the JSON tells the same story (before: {"accumulates": true} beside the flip the terminal names)
    assert root["intervention"]["spread"] == {"accumulates": False, "tie": "TopK 'node_topk__1'", "within": []}, root
    assert "— no single layer: the decision flip at TopK 'node_topk__1' (above) follows a near tie" in root["hint"]
    assert "the error accumulates" not in root["hint"], root["hint"]


def test_a_wide_margin_is_the_same_choice(tmp_path):
    proc, report = _bisect(tmp_path, "build_queries_wide")
    assert proc.returncode == 0 and report["root_cause"].get("ort-cpu-fp16") is None, report["outcome_reasons"]
    assert report["decisions"]["ort-cpu-fp16"] == []


def _keep_fp32_tie(tmp_path, build: str) -> str:
    """keep-fp32 on `build`: one run, status tie, exit 1; its tie's text."""
    out = tmp_path / "k.json"
    proc = cpdebug("keep-fp32", "--torch", f"{MODELS}:{build}", "-b", "torch,ort-cpu-fp16", "--json", out)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert (result["status"], result["keep"], result["runs"]) == ("tie", None, 1), result
    return result["tie"]


def test_keep_fp32_searches_no_set_for_near_ties_in_the_order(tmp_path):
    """A sorted TopK's near tie among its own k reorders what it hands on: keep-fp32 reads it (one run, status tie)
    instead of keeping the score's nodes in FP32 for this input."""
    tie = _keep_fp32_tie(tmp_path, "build_order")
    assert tie.startswith("TopK 'node_topk__1' orders near ties: two neighbours of its top 5"), tie


def test_an_argmax_between_near_ties_is_named_in_its_row(tmp_path):
    proc, report = _bisect(tmp_path, "build_argmax")
    assert proc.returncode == 0, report["outcome_reasons"]
    [flip] = report["decisions"]["ort-cpu-fp16"]
    assert (flip["op"], flip["k"], flip["rows"], flip["flipped_rows"], flip["replaced"]) == ("ArgMax", 1, 2, 1, 1)
    assert 5e-5 < flip["margin"] < 2e-4 and flip["step"] == 2 ** -10, flip


def _named_at(tmp_path, build: str, finding: str, twin: str) -> tuple[str, dict]:
    """bisect on `build`: within precision (exit 0), its root cause's hint starting with `finding`, no layer's
    rounding nor a shape mix-up in it; its wide `twin` within precision with no decision changed. The hint and the
    decision's JSON."""
    proc, report = _bisect(tmp_path, build)
    assert proc.returncode == 0 and "decision flip alone" in report["outcome_reasons"]["ort-cpu-fp16"], \
        report["outcome_reasons"]
    hint = report["root_cause"]["ort-cpu-fp16"]["hint"]
    assert hint.startswith(finding) and "FP16 rounding" not in hint and "shape/layout" not in hint, hint
    assert "the error accumulates" not in hint, hint  # the intervention's halves said beside the flip (one story)
    [flip] = report["decisions"]["ort-cpu-fp16"]
    proc, report = _bisect(tmp_path, twin)
    assert proc.returncode == 0 and report["decisions"]["ort-cpu-fp16"] == [], report["outcome_reasons"]
    return hint, flip


def test_a_score_threshold_flipped_by_rounding_is_named_with_its_margin(tmp_path):
    """s > 0.5 on a score of 0.5 + 1e-4, which float16 rounds to 0.5 (its step there 4.9e-4): before, 'diverged',
    root cause `head`, "FP16 rounding introduced by this layer (local rel. error 0.15)"."""
    hint, flip = _named_at(tmp_path, "build_gate", "threshold flip at Greater", "build_gate_wide")
    assert "1 of 32 comparison(s) came out otherwise" in hint
    assert (flip["decision"], flip["replaced"], flip["threshold"]) == ("threshold", 1, 0.5), flip
    assert 5e-5 < flip["margin"] < 2e-4 and flip["step"] == 2 ** -11, flip


def test_a_box_nms_keeps_otherwise_is_named_with_its_iou_margin(tmp_path):
    """A box nested in another with IoU 0.5 + 1e-4: FP32 suppresses it, float16 rounds its height to 0.5 (IoU 0.5,
    not above) and keeps it. Before, 'diverged', "shape/layout mix-up: reference [11, 4] vs candidate [12, 4]"."""
    hint, flip = _named_at(tmp_path, "build_nms", "non-max suppression flip at NonMaxSuppression",
                              "build_nms_wide")
    assert "it kept 1 box(es) the reference suppressed" in hint
    assert (flip["decision"], flip["entered"], flip["replaced"], flip["k"]) == ("nms", 1, 0, 11), flip
    assert "its IoU against 0.5" in flip["summary"] and 5e-5 < flip["margin"] < 2e-4, flip


def test_keep_fp32_searches_no_set_for_a_value_at_its_threshold(tmp_path):
    tie = _keep_fp32_tie(tmp_path, "build_gate")
    assert tie.startswith("Greater 'node_gt' compares 1 of 32 value(s) with its threshold 0.5"), tie


def test_keep_fp32_searches_no_set_for_boxes_at_the_iou_threshold(tmp_path):
    """Before: 'impossible' with its four Gemms kept (the boxes are the input's, rounded before any node)."""
    tie = _keep_fp32_tie(tmp_path, "build_nms")
    assert "the nearest: the IoU 0.5001 becomes 0.5 against 0.5" in tie, tie
