"""ultralytics YOLOv8n, where the library installs (issue 69): healthy within precision at the default level, at
`--level all` and as a user's dynamo ONNX file; a planted FP16 overflow named at its module with the op and a
verified cure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytest.importorskip("ultralytics")
from tests.zoo import yolo_models  # noqa: E402 - after the skip: it builds ultralytics' model

YOLO = Path(yolo_models.__file__)


@pytest.mark.parametrize("level", ["block", "all"])
def test_a_healthy_yolov8n_is_within_precision_at_the_default_level_and_at_all(tmp_path, level):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{YOLO}:build_yolo", "--backends", "torch,ort-cpu-fp16", "--level", level,
                   "--json", out)
    report = json.loads(out.read_text())
    assert proc.returncode == 0, report["outcome_reasons"]
    assert report["outcomes"]["ort-cpu-fp16"] == "within_precision"


def test_a_healthy_yolov8n_onnx_file_is_within_precision(tmp_path):
    from tests.zoo.planted_export import onnx_with_inputs

    path, feeds = onnx_with_inputs(*yolo_models.build_yolo(), tmp_path)
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--onnx", path, "--inputs", feeds, "--backends", "ort,ort-cpu-fp16", "--json", out)
    assert proc.returncode == 0, json.loads(out.read_text())["outcome_reasons"]


def test_a_planted_overflow_in_yolov8n_is_named_at_its_module_with_a_verified_cure(tmp_path):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{YOLO}:build_yolo_planted", "--backends", "torch,ort-cpu-fp16",
                   "--json", out)
    assert proc.returncode == 1
    root = json.loads(out.read_text())["root_cause"]["ort-cpu-fp16"]
    assert root["probe"] == "model.6.m.0.cv1.bn", root  # the BatchNorm's row holds the folded conv + BN
    assert root["hint"].startswith("FP16 overflow at model.6.m.0.cv1.bn: Conv"), root
    assert "verified: keeping" in root["hint"]
