"""Issue 115, item 1: the own-error ranking proposes, the outputs decide (bisect/findings/intervention.py).

tests/bisect/fp16_saturating.py: a tanh-GELU's x³ leaves float16's range first (Inf at `act.cube`, ranked first as
NaN/Inf is), but the tanh saturates it; a LayerNorm written as ops overflows its sum of squares and wrecks the
outputs. Restoring `act.cube` (its nodes kept in FP32) leaves the outputs as they were; restoring `norm` brings them
back: the root cause is `norm`, its reason the sum of squares, and the advised keep set cures the model in one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.slow  # two bisects with an export each

MODEL = f"{Path(__file__).with_name('fp16_saturating.py')}:build"


def test_the_overflow_the_tanh_saturates_is_let_go_and_the_layernorm_is_confirmed(tmp_path):
    proc = cpdebug("bisect", "--torch", MODEL, "-b", "torch,ort-cpu-fp16", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-fp16"]
    assert cause["probe"] == "norm" and cause["confirmed"] is True, cause
    assert "'node_mul_6'" in cause["hint"] and "act" not in cause["hint"].split(";")[0], cause["hint"]
    tried = cause["intervention"]["tried"]
    assert [t["candidate"] for t in tried] == ["act.cube", "norm"], tried
    cube, norm = tried
    assert not cube["back"] and cube["output_error_after"]["ratio"] > 0.9 * cube["output_error_before"]["ratio"]
    assert norm["back"] and norm["output_error_after"]["within"] and norm["output_error_after"]["ratio"] < 1
    keep = cause["intervention"]["keep"]
    assert "node_sum_1" in keep and not set(keep) & set(cube["nodes"]), keep

    # the advice, applied once, brings the model back
    proc = cpdebug("bisect", "--torch", MODEL, "-b", "torch,ort-cpu-fp16", "--keep-fp32", ",".join(keep),
                   "--json", tmp_path / "kept.json", "--quiet")
    report = json.loads((tmp_path / "kept.json").read_text())
    assert report["outputs_within_tolerance"]["ort-cpu-fp16"] is True, report["outcome_reasons"]
    out = {r["probe"]: r for r in report["results"]["ort-cpu-fp16"]}["output0"]
    assert out["status"] == "ok" and out["rel_rmse"] < 0.01, out
    # what is left is the saturated x³'s Inf inside the GELU, harmless at the outputs (restoring it changes nothing)
    assert report["root_cause"]["ort-cpu-fp16"] is None or "act" in report["root_cause"]["ort-cpu-fp16"]["probe"]
