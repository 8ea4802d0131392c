"""Export faults users report, named at their module with the number they rest on (issue 69 item 3): a nearest
Resize rounding its source indices otherwise than PyTorch, a floor division exported as truncation, a log guard the
dynamo exporter's optimizer drops; their healthy twins within precision with either exporter; and timm ConvNeXt's
layer scale (1e-6), lost in FP16, judged by its share of the residual sum it is added to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug
from tests.zoo import planted_export

ZOO = Path(planted_export.__file__)


@pytest.mark.parametrize("build, exporter, probe, reason", [
    ("build_resize_planted", "torchscript", "1",
     "nearest Resize '/1/Resize' (coordinate_transformation_mode=asymmetric, nearest_mode=round_prefer_ceil) picks "
     "another source index than PyTorch's 'nearest' for 7 of 16 indices along axis 2, 7 of 16 indices along axis 3: "
     "700 of 1024 output elements"),
    ("build_floordiv_planted", "torchscript", "1",
     "integer Div '/1/Div' truncates toward zero where PyTorch floors (`//`, rounding_mode='floor'): 5 of 32 "
     "element(s) differ by exactly 1, every one where the quotient is negative"),
    ("build_removed_planted", "dynamo", "2",
     "the exporter removed aten 'add' (`return torch.log(p + self.guard)`): PyTorch's log reads it, while the ONNX "
     "Log 'node_log' reads 'relu' directly, 13 of 32 of whose values are 0 (log(0) = -inf)")],
    ids=["resize", "floordiv", "removed"])
def test_an_export_fault_is_named_at_its_module_with_its_count(tmp_path, build, exporter, probe, reason):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:{build}", "--backends", "torch,ort", "--exporter", exporter,
                   "--json", out)
    root = json.loads(out.read_text())["root_cause"]["ort"]
    assert proc.returncode == 1
    assert root["probe"] == probe and root["hint"].startswith(f"export fault at {probe}: {reason}"), root


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_the_healthy_twins_are_within_precision(tmp_path, exporter):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:build_export_healthy", "--backends", "torch,ort", "--exporter",
                   exporter, "--json", out)
    report = json.loads(out.read_text())
    assert proc.returncode == 0, report["outcome_reasons"]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_convnext_layer_scale_lost_in_fp16_is_judged_by_its_share_of_the_residual_sum(tmp_path):
    pytest.importorskip("timm")
    path, feeds = planted_export.onnx_with_inputs(*planted_export.build_convnext(), tmp_path)
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--onnx", path, "--inputs", feeds, "--backends", "ort,ort-cpu-fp16",
                   "--json", out)
    report = json.loads(out.read_text())
    assert proc.returncode == 0, report["outcome_reasons"]
    rows = {r["probe"]: r for r in report["results"]["ort-cpu-fp16"]}
    term = rows["stages.0.blocks.0/Mul"]  # gamma (1e-6) × the MLP's output: its digits lost in float16
    assert term["status"] == "ok" and term["rel_rmse"] > 0.5
    assert term["note"].startswith("a small term of stages.0.blocks.0/Add: its term is "), term["note"]
    assert "within the sum's budget (0.0312)" in term["note"]
