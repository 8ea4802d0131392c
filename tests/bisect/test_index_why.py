"""A float made an index — a Cast to int64, a Floor (`//` on floats, torchvision's FPN level mapper), a nearest
grid_sample's coordinate — that float16 rounds across its boundary is named as the index flip, with the reference's
value, its rounding and the step (issue 84, item 5); the same models with the value away from the boundary, and
torchvision's FPN (a nearest Resize at a non-integer ratio), are within precision, with no such reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("index_models.py")
NUMBER = r"([-+0-9.e]+)"


def _bisect(tmp_path, build: str, exporter: str = "torchscript", candidate: str = "ort-cpu-fp16"):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{MODELS}:{build}", "--backends", f"torch,{candidate}", "--exporter",
                   exporter, "--json", out)
    return proc, json.loads(out.read_text())


@pytest.mark.parametrize("build, exporter, probe, op, said, lo, hi, step", [
    # a Linear's output 2.99997 (its float16: 3.0) truncated by `.long()`; before: root cause `lin`, "FP16 rounding"
    ("build_cast", "torchscript", "emb", "Cast to int64", "1 of 8 values truncate differently", 2.9999, 3.0, 0.00195),
    # the same value through `x * 2 // 2` (the dynamo exporter's Div + Floor)
    ("build_floor", "dynamo", "emb", "Floor", "1 of 8 values floor differently", 2.9999, 3.0, 0.00195),
    # torchvision's FPN level mapper on a proposal 447.99 wide (448.0 in float16): level 4.99997 floors to 5, not 4
    ("build_levels", "torchscript", "levels", "Floor", "1 of 6 values floor differently", 4.9999, 5.0, 0.00391),
    # a Round computing in float16 inside `head`'s segment: 3.49995 is 3.5 there, which rounds (half to even) to 4
    ("build_round", "torchscript", "head", "Round", "1 of 32 values round differently", 3.4999, 3.5, 0.00195)],
    ids=["cast", "floordiv", "torchvision-levels", "round-in-segment"])
def test_a_value_rounded_across_an_integer_is_named_as_the_index_flip(tmp_path, build, exporter, probe, op, said,
                                                                       lo, hi, step):
    proc, report = _bisect(tmp_path, build, exporter)
    assert proc.returncode in (1, 4), report["outcome_reasons"]  # beyond fp16 after the index
    root = report["root_cause"]["ort-cpu-fp16"]
    assert root["probe"] == probe, root
    assert re.match(rf"index flip at {op} '[^']+': {said}: ", root["hint"]), root
    m = re.search(rf"the reference value {NUMBER} rounds to {NUMBER} in float16 \(step {NUMBER}\), which gives "
                  rf"{NUMBER} instead of {NUMBER}", root["hint"])
    value, rounded, got_step, cand, ref = (float(g) for g in m.groups())
    assert lo < value < hi and rounded == hi and cand == ref + 1 and abs(got_step - step) < 1e-5, root["hint"]
    assert "FP16 rounding introduced" not in root["hint"]


def test_a_grid_coordinate_rounded_across_a_half_integer_takes_another_source_pixel(tmp_path):
    proc, report = _bisect(tmp_path, "build_grid")
    assert proc.returncode in (1, 4), report["outcome_reasons"]
    root = report["root_cause"]["ort-cpu-fp16"]
    assert root["probe"] == "head", root  # the grid_sample runs in the model's own forward, before `head`
    m = re.search(rf"index flip at GridSample \(nearest\) '[^']+': 1 of 16 output pixels take a different source "
                  rf"index once the grid is rounded to float16: the reference's source coordinate {NUMBER} becomes "
                  rf"{NUMBER} \(the step there {NUMBER}\), index 2 instead of 3", root["hint"])
    assert m, root["hint"]
    value, rounded, step = (float(g) for g in m.groups())
    assert 2.5 < value < 2.5005 and rounded == 2.5 and 0 < step < 0.002, root["hint"]


def test_int8_names_the_values_within_its_calibrated_step_of_the_boundary(tmp_path):
    """INT8 quantizes the Linear's MatMul; its bias is added after: the grid's step is known (amax / 127), not its
    offset, so the values within a step are counted and none is said to cross."""
    proc, report = _bisect(tmp_path, "build_cast", candidate="ort-cpu-int8")
    assert proc.returncode in (1, 4), report["outcome_reasons"]
    root = report["root_cause"]["ort-cpu-int8"]
    assert root["probe"] == "emb", root  # before: `lin`, with no reason
    m = re.search(rf"index flip at Cast to int64 '[^']+': 1 of 8 reference values lie within int8's calibrated "
                  rf"step \(amax / 127: {NUMBER}\) of 3 \(closest {NUMBER}, ", root["hint"])
    assert m, root["hint"]
    step, value = (float(g) for g in m.groups())
    assert 0.002 < step < 0.05 and 2.9999 < value < 3.0, root["hint"]


@pytest.mark.parametrize("build", ["build_cast_far", "build_levels_far", "build_round_far", "build_grid_far",
                                   "build_fpn"])
def test_the_same_value_away_from_the_boundary_is_no_finding(tmp_path, build):
    """And torchvision's FPN, whose nearest Resize upsamples 5 → 9: ONNX Runtime computes its source coordinates
    from float32 scales whatever the data's type, so float16 picks the same source pixels."""
    proc, report = _bisect(tmp_path, build)
    assert proc.returncode == 0, report["outcome_reasons"]
    assert report["root_cause"].get("ort-cpu-fp16") is None


def _node(op: str, **attrs):
    from onnx import helper

    return helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)


def test_the_values_counted_are_those_the_format_moves_across_the_boundary_or_leaves_within_a_step():
    import numpy as np

    from cp_debug.bisect.findings.index_why import IndexFlip, _Format, _values

    x = np.array([2.99997, 1.2, 3.0, -4.0, 5.5], dtype=np.float32)  # whole values cross nothing
    crossed, near, size, value, rounded, boundary, _ = _values(_node("Cast", to=7), x, _Format("fp16"))
    assert (crossed, near, size, rounded, boundary) == (1, 1, 5, 3.0, 3.0) and 2.9999 < value < 3.0
    # within a step but not moved by the format's own rounding: said as near, with its distance
    near_only = _values(_node("Floor"), np.array([2.9985, 0.4], dtype=np.float32), _Format("fp16"))
    assert near_only[:3] == (0, 1, 2)
    text = IndexFlip("p", "floor", "Floor", None, *near_only, "fp16").text()
    assert "1 of 2 reference values lie within float16's rounding step (0.00195) of 3" in text, text
    # Round's boundary is the half-integer; bfloat16's step at 2.5 is 2^-6
    assert _values(_node("Round"), np.array([2.5039], dtype=np.float32), _Format("bf16"))[:2] == (1, 1)
    assert _values(_node("Round"), np.array([2.3, 3.0], dtype=np.float32), _Format("fp16")) is None
