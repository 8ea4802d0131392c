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
    assert back.facts == report.facts and back.to_json()["model"] == report.to_json()["model"]

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


def test_the_model_facts_of_older_reports_read_back_and_a_foreign_kind_is_one_line(report, tmp_path):
    """A recipe run's facts from before the point cloud, the grid and random_weights were recorded read back with
    those as None; each kind's facts write the JSON they were read from; a kind cp_debug never writes is refused."""
    from cp_debug.bisect.subjects.model_facts import OnnxFacts, RecipeFacts, TorchFacts, model_facts_from_json

    old = {"kind": "recipe", "recipe": "centerpoint", "preset": "demo", "weights": "random", "points": "synthetic"}
    facts = model_facts_from_json(old)
    assert isinstance(facts, RecipeFacts) and facts.title == "centerpoint (demo)"
    assert (facts.random_weights, facts.grid, facts.point_cloud, facts.int8) == (None, None, None, None)
    torch = {"kind": "torch", "source": "m.py:make", "class": "Net", "inputs": None, "exporter": "auto"}
    onnx = {"kind": "onnx", "source": "dir/m.onnx", "inputs": "x.npz", "seed": 3}
    factory = {"kind": "recipe", "recipe": "centerpoint", "model_factory": "f.py:make", "preset": "demo",
               "name": "model factory f.py:make (settings demo)", "weights": "its own", "points": "s",
               "points_file": None, "seed": 0, "load_dim": None, "use_dim": [0, 1, 2, 3],
               "modules": {"pts_voxel_encoder": "A"}, "point_cloud": {"format": "synthetic"}, "num_points": 5,
               "num_voxels": 4, "grid": [8, 8], "factory": {"note": "x"}}
    for d, kind, title in ((torch, TorchFacts, "Net"), (onnx, OnnxFacts, "m.onnx"),
                           (factory, RecipeFacts, factory["name"])):
        facts = model_facts_from_json(d)
        assert isinstance(facts, kind) and facts.title == title and list(facts.to_json().items()) == list(d.items())
    assert model_facts_from_json({}) is None and model_facts_from_json(None) is None
    d = {**report.to_json(), "model": {"name": "hand-made"}}
    (tmp_path / "r.json").write_text(json.dumps(d))
    with pytest.raises(BadInputError, match="not a complete cp_debug report: its model is of kind None") as err:
        load_report(tmp_path / "r.json")
    _one_line(err.value)


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
    from cp_debug.lidar.record import ModelRecord

    record = ModelRecord.of("tiny", seed=3)
    path = write_json(tmp_path / "typed.json", {"report": report, "model_record": record, "t": (1, float("inf"))})
    raw = path.read_text(encoding="utf-8")
    assert raw == json_text({"report": report.to_json(), "model_record": record.to_json(), "t": [1, "inf"]}) + "\n"
    assert json.loads(raw)["model_record"] == record.to_json()
