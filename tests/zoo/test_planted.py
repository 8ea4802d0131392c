"""Planted FP16 faults in models no one here tuned for (issue 55): each is named at its module with the op and
the number the reason rests on, and the advice is tried on the segment before the report calls it a cure."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import cpdebug
from tests.zoo import models

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

ZOO = Path(models.__file__)


def _bisect(tmp_path: Path, build: str, backends: str = "torch,ort-cpu-fp16", *extra: str):
    out = tmp_path / f"{build}.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:{build}", "--backends", backends, "--json", out, *extra)
    return proc, json.loads(out.read_text())


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_an_attention_overflow_is_named_at_its_logits_with_the_number_and_a_verified_cure(tmp_path):
    proc, report = _bisect(tmp_path, "build_detr_planted", "torch,ort-cpu-fp16", "--bundle", tmp_path / "bundle")
    assert proc.returncode == 1
    # the bundle computes what the bisect computed (float16 storage as explicit Casts): it reproduces on its own
    assert "does not reproduce" not in proc.stderr + proc.stdout
    rep = subprocess.run([sys.executable, "repro.py"], cwd=tmp_path / "bundle", capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 1 and "REPRODUCED" in rep.stdout, rep.stdout[-1500:] + rep.stderr[-1500:]
    rc = report["root_cause"]["ort-cpu-fp16"]
    assert rc["probe"] == "encoder.layers.1.self_attn[0]"
    hint = rc["hint"]
    assert hint.startswith("FP16 overflow at encoder.layers.1.self_attn: attention logits (QK^T) MatMul")
    value = float(hint.split("|x| = ")[1].split(" ")[0])
    assert 1e5 < value < 1e6  # the planted logits, ~1.9e5
    assert "verified: keeping" in hint and "Softmax" in hint and "LayerNorm" not in hint


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_hand_written_attention_overflow_is_named_in_its_block_and_cured(tmp_path):
    proc, report = _bisect(tmp_path, "build_text_planted")
    assert proc.returncode == 1
    hint = report["root_cause"]["ort-cpu-fp16"]["hint"]
    assert hint.startswith("FP16 overflow at blocks.1.attn: attention logits (QK^T) MatMul")
    # the overflow's keep set brings its segment within precision; at the outputs (the same judge as the run's: every
    # output element-wise within tolerance) it is said with its number and not offered as the cure (s8-hints, advice
    # held to the outputs: here inf× → 0.27× the RMS budget, some elements still beyond): the words say which check
    # fails, from the judge's own numbers (the element-wise one: within the RMS budget, not a contradiction)
    assert "in FP32 brings this segment within precision" in hint and "node_matmul_2" in hint
    m = re.search(r"not the outputs \(worst output inf× → ([\d.]+)× its RMS budget, yet (\d+) element\(s\) of \S+ "
                  r"beyond the tolerance \|Δ\| ≤ [\d.e-]+ \+ [\d.e-]+·\|ref\| \((\d+) allowed; "
                  r"max \|Δ\| ([\d.e+-]+)\)\): not the cure", hint)
    assert m is not None, hint
    assert float(m[1]) <= 1 and int(m[2]) > int(m[3]) and float(m[4]) > 0, hint
    # the intervention's runs, "beyond their budget", say it of that keep set too
    assert re.search(r"keep set: \d+ node\(s\) kept in FP32\): [\d.]+× \(\d+ element\(s\) of \S+ beyond the "
                     r"tolerance\)", hint), hint


def test_an_mlp_overflow_is_named_at_its_layer_with_the_reference_value(tmp_path):
    proc, report = _bisect(tmp_path, "build_text_mlp_planted")
    assert proc.returncode == 1
    rc = report["root_cause"]["ort-cpu-fp16"]
    assert rc["probe"].startswith("blocks.0.mlp.0"), rc
    assert "FP16 overflow at blocks.0.mlp.0" in rc["hint"] and "verified" in rc["hint"]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_healthy_transformer_is_within_fp16_precision_at_level_all(tmp_path):
    proc, report = _bisect(tmp_path, "build_detr", "torch,ort-cpu-fp16", "--level", "all")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert report["first_divergent"] == {"ort-cpu-fp16": None}


def test_a_fused_attention_keeps_the_planted_logits_in_float32_and_the_settings_say_so(tmp_path):
    """torch's scaled_dot_product_attention on a GPU (flash, memory-efficient) never stores QK^T in half: the planted
    model is within precision there while the unfused ONNX graph overflows. torch-cpu-fp16 emulates that."""
    proc, report = _bisect(tmp_path, "build_detr_planted", "torch,torch-cpu-fp16")
    assert proc.returncode == 0, proc.stdout[-2000:]
    (settings,) = report["settings"]["backends"]["torch-cpu-fp16"].values()
    assert settings["attention"].startswith("scaled_dot_product_attention emulated as a GPU's fused kernel")


def test_the_onnx_lockstep_says_it_ran_float16_storage_not_float32(tmp_path):
    proc, report = _bisect(tmp_path, "build_detr", "ort,ort-cpu-fp16", "--level", "all")
    assert proc.returncode == 0, proc.stdout[-2000:]
    precision = report["precision"]["ort-cpu-fp16"]
    assert precision["effective"] == "fp16" and "float16 storage emulated" in precision["notes"][0]
    assert "ran fp32" not in proc.stdout + proc.stderr


def test_an_input_taking_the_branch_the_exporter_did_not_trace_names_the_branch_and_its_line(tmp_path):
    import numpy as np

    np.savez(tmp_path / "neg.npz", x=-(np.random.default_rng(0).random((2, 4), dtype=np.float32) + 0.5))
    proc, report = _bisect(tmp_path, "build_branchy", "torch,ort", "--exporter", "torchscript", "--inputs",
                           tmp_path / "neg.npz")
    assert proc.returncode == 1
    hint = report["root_cause"]["ort"]["hint"]
    assert "data-dependent control flow frozen by the exporter: models.py:" in hint
    assert "`if x.mean() > 0:`" in hint
