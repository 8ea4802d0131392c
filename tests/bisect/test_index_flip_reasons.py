"""Issue 108, item 3: a floor division made a position (`torch.div(t, 4, rounding_mode='floor')`) whose float16
value crosses its integer is named as the index flip with the value, its rounding and the step — also where the
Linear that makes the value and the division share one probe's segment (before: `attn`, "FP16 rounding introduced by
this layer (local rel. error 0.35)", no reason: its segment read after refinement no longer held the Floor). A nearest
upsample at a non-integer scale (1.2) takes its source indices from float32 scales, which the FP16 conversion keeps:
no flip, within precision."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("index_flip_models.py")
NUMBER = r"([-+0-9.e]+)"


def _bisect(tmp_path, build: str, *extra: str):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{MODELS}:{build}", "--backends", "torch,ort-cpu-fp16", "--json", out,
                   *extra)
    return proc, json.loads(out.read_text())


@pytest.mark.parametrize("build, level, probe", [("build_floor_div", "layer", "pos"),
                                                 ("build_floor_div_inside", "stage", "attn"),
                                                 ("build_floor_div_inside", "layer", "attn.pos")])
def test_a_floor_division_made_a_position_is_named_with_its_value_rounding_and_step(tmp_path, build, level, probe):
    proc, report = _bisect(tmp_path, build, "--level", level)
    root = report["root_cause"]["ort-cpu-fp16"]
    reason = report["outcome_reasons"]["ort-cpu-fp16"]
    assert proc.returncode in (1, 4) and root["probe"] == probe, (root, reason)
    assert re.match(r"index flip at (attn: )?Floor '[^']+': 1 of 8 values floor differently: ", root["hint"]), root
    m = re.search(rf"the reference value {NUMBER} rounds to {NUMBER} in float16 \(step {NUMBER}\), which gives "
                  rf"{NUMBER} instead of {NUMBER}", root["hint"])
    value, rounded, step, cand, ref = (float(g) for g in m.groups())
    assert 2.9999 < value < 3.0 and rounded == 3.0 and (cand, ref) == (3.0, 2.0) and abs(step - 0.00195) < 1e-5
    assert "rounding introduced" not in root["hint"] and "local fault" not in reason, reason
    assert "the root cause is a decision, " in reason and "Floor" in reason, reason


def test_a_nearest_upsample_at_a_non_integer_scale_keeps_its_indices_in_fp16(tmp_path):
    proc, report = _bisect(tmp_path, "build_upsample")
    assert proc.returncode == 0 and report["root_cause"].get("ort-cpu-fp16") is None, report["outcome_reasons"]
