"""Issue 115, item 3: a decision at the application's level is a precision of its own (bisect/findings/decisions.py).

tests/bisect/int8_proposals.py scores 32 proposals around the application's 0.6 threshold. INT8's rounding is far
within its expected error at every probe and output, yet one proposal crosses 0.6: with `--metric FILE.py:above`
(how many pass 0.6) the run is not within precision, the flip is a decision of the report, and the layer whose
restoration (left out of INT8) brings the count back is the root cause, confirmed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.slow  # two bisects with an export each

MODELS = Path(__file__).with_name("int8_proposals.py")


def test_a_proposal_crossing_the_threshold_is_no_longer_within_precision(tmp_path):
    base = ("bisect", "--torch", f"{MODELS}:build", "-b", "torch,ort-cpu-int8", "--quiet")
    proc = cpdebug(*base, "--json", tmp_path / "plain.json")
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert proc.returncode == 0 and plain["outcomes"]["ort-cpu-int8"] == "within_precision", plain["outcome_reasons"]
    assert plain["decisions"]["ort-cpu-int8"] == []  # scores near 0.6 are no Sigmoid's 0.5 flip

    proc = cpdebug(*base, "--metric", f"{MODELS}:above", "--json", tmp_path / "metric.json")
    report = json.loads((tmp_path / "metric.json").read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    assert report["outcomes"]["ort-cpu-int8"] == "diverged", report["outcome_reasons"]
    decision, = report["decisions"]["ort-cpu-int8"]
    assert decision["rule"] == "metric" and decision["changed"], decision
    assert decision["reference"] != decision["candidate"], decision
    assert "the decision changes" in report["outcome_reasons"]["ort-cpu-int8"]
    cause = report["root_cause"]["ort-cpu-int8"]
    assert cause is not None and cause["confirmed"] is True, cause
    cured = [t for t in cause["intervention"]["tried"] if t["back"]]
    assert cured and cured[0]["output_error_before"]["decisions_flipped"] == 1, cause["intervention"]
    assert cured[0]["output_error_after"]["decisions_flipped"] == 0, cause["intervention"]
