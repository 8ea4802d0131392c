"""The screen finds a tensor that collapses to all zeros behind a residual (issue 84, item 1): before, the default
level read "within precision" (the block's output carries the residual); now the collapsed module is measured and
named with FP16's underflow, the healthy twin stays within precision."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("collapse_models.py")


def test_a_branch_collapsed_to_zero_behind_a_residual_is_found(tmp_path):
    proc = cpdebug("bisect", "--torch", f"{MODELS}:collapsed", "-b", "torch,ort-cpu-fp16", "--json",
                   tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    cause = report["root_cause"]["ort-cpu-fp16"]
    assert cause["probe"].startswith("1.inner.tiny"), cause
    assert cause["hint"].startswith("FP16 underflow: values here are tiny"), cause
    said = [w for w in report["warnings"] if "collapses to all zeros" in w]
    assert said and "1.inner.tiny" in said[0], report["warnings"]


def test_the_healthy_twin_stays_within_precision(tmp_path):
    proc = cpdebug("bisect", "--torch", f"{MODELS}:healthy", "-b", "torch,ort-cpu-fp16", "--json",
                   tmp_path / "r.json", env={"CPDEBUG_CACHE_DIR": str(tmp_path / "cache")})
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0 and not [w for w in report["warnings"] if "collapses" in w], report["warnings"]
    # the screen's own runs are a step of the progress (on a CPU, a long one: it builds and runs a screened graph)
    assert "✓ ort-cpu-fp16: screening collapse_models for faults its outputs hide (" in proc.stderr, proc.stderr
    # it screens the graph the candidate's runner converted and ran: the stage is not converted again without its
    # probes (each conversion is an entry of the fp16 cache)
    converted = [onnx.load(f, load_external_data=False) for f in (tmp_path / "cache" / "fp16").glob("*.onnx")]
    assert converted and all(len(m.graph.output) > 1 for m in converted), [
        [o.name for o in m.graph.output] for m in converted]
