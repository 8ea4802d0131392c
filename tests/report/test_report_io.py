from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cp_debug.bisect.result import BisectReport
from cp_debug.errors import BadInputError
from cp_debug.files import json_text, write_json
from cp_debug.report.io import load_report
from tests.report.sample import FP16, FP32, HINT, PLANTED, TRT


def _one_line(err: BadInputError) -> str:
    msg = str(err)
    assert "\n" not in msg and msg
    return msg


def test_json_round_trip_is_strict(report, tmp_path):
    text = json.dumps(report.to_json(), allow_nan=False)  # raises on a NaN/Infinity token
    back = BisectReport.from_json(json.loads(text))
    assert [c.label for c in back.candidates] == [FP16, FP32, TRT]
    c = back.candidate(FP16)
    assert c.first_divergent == PLANTED
    assert c.root_cause.probe == PLANTED and c.root_cause.hint == HINT
    assert back.candidate(TRT).error and back.candidate(FP32).first_divergent is None
    assert back.to_json()["results"] == report.to_json()["results"]
    assert back.plots == json.loads(json.dumps(report.plots))

    path = write_json(tmp_path / "run.json", report)
    raw = path.read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    loaded = load_report(path)
    assert loaded.to_json()["results"] == report.to_json()["results"]
    assert loaded.candidate(FP16).root_cause.hint == HINT


def test_non_finite_values_anywhere_stay_strict_json(report, tmp_path):
    report.settings["noise"] = {"a": float("nan"), "b": np.float32(np.inf), "arr": np.array([1.0, -np.inf])}
    report.environment["tuple"] = (1, 2)
    text = json_text(report.to_json())
    d = json.loads(text)
    assert d["settings"]["noise"] == {"a": "nan", "b": "inf", "arr": [1.0, "-inf"]}
    assert d["environment"]["tuple"] == [1, 2]
    write_json(tmp_path / "r.json", report)
    assert load_report(tmp_path / "r.json").settings["noise"]["a"] == "nan"


@pytest.mark.parametrize("content,needle", [
    (None, "not found"),
    ("{not json", "not valid JSON (line 1"),
    ('{"schema": "other/1"}', "schema is 'other/1'"),
    ("[1, 2]", "not a cp_debug report"),
    ('{"schema": "cp_debug.report/1", "reference": "torch"}', "not a complete cp_debug report"),
])
def test_load_report_errors_are_one_line(tmp_path, content, needle):
    p = tmp_path / "run.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(BadInputError) as e:
        load_report(p)
    assert needle in _one_line(e.value)


def test_load_report_on_a_directory(tmp_path):
    with pytest.raises(BadInputError, match="is a directory"):
        load_report(tmp_path)


def test_json_numbers_survive(report, tmp_path):
    d = json.loads(json_text(report.to_json()))
    r = next(r for r in d["results"][FP16] if r["probe"] == PLANTED)
    orig = next(r for r in report.candidate(FP16).results if r.probe == PLANTED).diff
    assert math.isclose(r["max_abs"], orig.max_abs) and r["status"] == "diverged"


def test_the_one_writer_serializes_typed_values_by_their_to_json(report, tmp_path):
    # a typed value goes to the writer as it is (BisectReport, ModelRecord inside a dict): its own to_json()
    from cp_debug.models.centerpoint.source import ModelRecord

    record = ModelRecord.of("tiny", seed=3)
    path = write_json(tmp_path / "typed.json", {"report": report, "model_record": record, "t": (1, float("inf"))})
    raw = path.read_text(encoding="utf-8")
    assert raw == json_text({"report": report.to_json(), "model_record": record.to_json(), "t": [1, "inf"]}) + "\n"
    assert json.loads(raw)["model_record"] == record.to_json()
