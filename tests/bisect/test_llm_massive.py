"""The massive-activation model in two more of the builder's model types (tests/data/llm/mistral_massive,
phi3_massive: `benchmarks/llm_massive.py`, answers_massive.json, found without cp_debug): the builder's INT4 file
(`-p int4 -e cpu`, accuracy_level 4) flips a greedy token at the answers' step, lm_head's MatMulNBits alone flips it
and its level 1 alone cures it; cp_debug names the step, that node and the cure in the builder's terms, verified on
the decode, and the flipped step's forward names lm_head's logits — a local fault beyond what the file's own
roundings explain (`compare/weight_only.py`), which no probe's propagated error shows (0.92× the budget)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
ANSWERS = json.loads((LLM / "answers_massive.json").read_text())


def _decode(tmp_path, model: str, n: int, *ref: str) -> tuple[int, str, dict]:
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([ANSWERS["prompt"]]))
    out = tmp_path / "report.json"
    ref = ref or ("--onnx", LLM / f"{model}/fp32/model.onnx", "-b", f"ort,ort@{LLM / model / 'int4'}")
    res = cpdebug("bisect", *ref, "--inputs", tmp_path / "prompt.npz", "--generate", n, "--json", out)
    return res.returncode, " ".join((res.stdout + res.stderr).split()), json.loads(out.read_text())


def _check(code: int, said: str, report: dict, model: str, n: int) -> None:
    want = ANSWERS["models"][model]["files"]["int4"]
    assert want["cured_by_level1_at"] == want["flips_alone_at_level4"] == ["/lm_head/MatMul_Q4"]
    assert f"greedy step {want['first_flip']}: token {want['torch_token']} → {want['file_token']}" in said
    assert "accuracy_level=1 on /lm_head/MatMul_Q4 alone gives the reference's tokens back" in said
    assert f"accuracy_level=1 or nodes_to_exclude=/lm_head/MatMul (verified on the {n}-token decode)" in said
    assert code == 1, said  # lm_head's own error beyond the file's roundings: diverged, not "degraded, within"
    root = next(iter(report["root_cause"].values()))["probe"]
    why = next(iter(report["outcome_reasons"].values()))
    assert root in ("logits", "lm_head") and f"local fault at {root}" in why
    assert "what int4w-a8's own roundings explain" in why and "no single layer dominates" not in why


def test_phi3_massive_flips_at_step_0_by_lm_heads_level(tmp_path):
    """Phi-3 (the HF model's fused qkv_proj and gate_up_proj): the prompt's own next token flips (154 → 207)."""
    code, said, report = _decode(tmp_path, "phi3_massive", 4)
    _check(code, said, report, "phi3_massive", 4)
    stage = next(iter(report["settings"]["deployed"].values()))["model"]
    assert not stage["unmapped"]


@pytest.mark.long
def test_mistral_massive_flips_at_step_26_by_lm_heads_level(tmp_path):
    code, said, report = _decode(tmp_path, "mistral_massive", ANSWERS["tokens"])
    _check(code, said, report, "mistral_massive", ANSWERS["tokens"])


@pytest.mark.long
def test_phi3_massive_against_its_pytorch_model(tmp_path):
    """`--torch` with the HF folder: the same step, node and cure, and lm_head's module named."""
    code, said, report = _decode(tmp_path, "phi3_massive", ANSWERS["tokens"], "--torch", LLM / "phi3_massive/hf",
                                 "-b", f"torch,ort@{LLM / 'phi3_massive/int4'}", "--level", "all")
    _check(code, said, report, "phi3_massive", ANSWERS["tokens"])


def _sweep(tmp_path, *more) -> tuple[int, str, dict]:
    """`cpdebug sweep --onnx qwen3_massive/plain -b ort,ort@qwen3_massive/rtn_int4_level4 --inputs prompt.npz`: a
    sample sweep (no --generate) of the RTN INT4 file (`MatMulNBitsQuantizer`, level 4) against its plain export."""
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([ANSWERS["prompt"]]))
    res = cpdebug("sweep", "--onnx", LLM / "qwen3_massive/plain/model.onnx", "-b",
                  f"ort,ort@{LLM / 'qwen3_massive/rtn_int4_level4'}", "--inputs", tmp_path / "prompt.npz",
                  "--out", tmp_path / "sweep", "--no-html", *more)
    doc = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    return res.returncode, " ".join((res.stdout + res.stderr).split()), doc


def test_a_sample_sweep_judges_an_int4_file_at_its_own_precision(tmp_path):
    """The sweep judges the deployed INT4 file at int4w-a8 with its measured unit, as bisect does (before: at FP32's
    budget, its logits "4.72e+03× fp32's budget")."""
    code, said, doc = _sweep(tmp_path, "--bisect-top", "0")
    (frame,) = doc["frames"]
    assert "int4w-a8's budget" in frame["reason"] and "fp32" not in frame["reason"], said
    assert frame["worst_ratio"] < 2 and code in (0, 4), said


@pytest.mark.long
def test_a_sample_sweep_judges_a_weight_only_file_as_bisect_does(tmp_path):
    """Its sample bisected (a weight-only candidate's worst, flagged or not: only a bisect measures a segment's own
    error) and judged as the bisect judged it: lm_head's segment beyond what the file's own roundings explain is a
    local fault, diverged (exit 1) as `cpdebug bisect` says, whatever its logits' ratio (0.9-1.05× the budget)."""
    code, said, doc = _sweep(tmp_path)
    (frame,) = doc["frames"]
    assert code == 1 and frame["status"] == "diverged" and frame["bisected"], said
    assert "as bisected: local fault at m.lm_head/MatMul" in frame["reason"], said
    assert "what int4w-a8's own roundings explain" in frame["reason"]
    bisect = json.loads((tmp_path / "sweep" / "bisect" / "prompt.json").read_text())
    assert bisect["outcome"] == "diverged"
    from cp_debug.bisect.result import BisectReport  # read back: the root's own budget, the one its reason says

    (cand,) = BisectReport.from_json(bisect).candidates
    lj = next(r for r in cand.results if r.probe == cand.root_cause.probe).local_judgement
    assert f"(budget {lj.expected_rel_rmse:.3g})" in frame["reason"], frame["reason"]
