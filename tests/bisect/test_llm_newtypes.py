"""Model types the LLM corpus never held, as a new user builds them (issue 116, s28: `benchmarks/llm_newtypes.py`,
`answers_newtypes.json` found without cp_debug): LFM2-MoE (tests/data/llm/lfm2moe: a conv layer, then an attention
layer whose MLP is 4 experts, top-2, routed by sigmoid scores with an expert bias). Its HF model's experts were
exported neither by torch.export (transformers' "eager" experts loop over the experts hit: a data-dependent guard)
nor by the TorchScript exporter (the mask's `diff`): `--torch` was exit 2; they are computed as "batched_mm" now."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
ANSWERS = json.loads((LLM / "answers_newtypes.json").read_text())


def _against_pytorch(tmp_path: Path, model: str):
    """`--torch MODEL/hf -b torch,ort@MODEL/int4 --generate N --level all` on the corpus prompt: the run, what it said
    (one line, the table's rules out), its JSON report's path."""
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([ANSWERS["prompt"]]))
    out = tmp_path / "report.json"
    res = cpdebug("bisect", "--torch", LLM / model / "hf", "-b", f"torch,ort@{LLM / model / 'int4'}",
                  "--inputs", tmp_path / "prompt.npz", "--generate", ANSWERS["tokens"], "--level", "all",
                  "--json", out)
    return res, " ".join((res.stdout + res.stderr).replace("│", " ").split()), out


@pytest.mark.long
def test_an_lfm2_moe_against_its_pytorch_model(tmp_path):
    """`--torch hf -b torch,ort@int4 --generate 16 --level all`: the INT4 file decodes PyTorch's 16 tokens (as found
    without cp_debug), within int4w-a8, every module the deployed graph holds mapped but the experts' own output
    (inside the fused QMoE). The router's tuple members — weights (float) and expert ids (int64), both [8, 2] — are
    told apart by their element types on the reference's side (before: by shape only, neither mapped: 24 of the 27
    probes whose module owns an ONNX node, 89 %; now 26, 96 %). The file's router TopK holds the chosen experts (found
    by computation, s29); it holds no tensor of the normalised weights (its QMoE takes the chosen scores unnormalised
    and normalises them inside), which is said as inside the QMoE with the experts' own output, counted apart."""
    entry = ANSWERS["models"]["lfm2moe"]
    assert entry["files"]["int4"]["first_flip"] is None
    res, said, out = _against_pytorch(tmp_path, "lfm2moe")
    assert res.returncode == 0, said  # before: exit 2, "ONNX export failed with both exporters"
    assert f"the reference's tokens (PyTorch, Lfm2MoeForCausalLM) {entry['torch_tokens']}" in said
    assert "decodes the same 16 tokens" in said and "within precision" in said
    # the chosen experts (the router's TopK output 1) mapped onto the file's TopK by computation (s28-dtype: "23 of
    # 26", not found); the normalised weights and the experts' own output computed inside the fused QMoE, counted apart
    assert "24 of 24 probes mapped" in said and "2 more inside its fused ops (QMoE)" in said, said
    assert "reported missing" not in said.split("24 of 24 probes mapped")[1].split("ort-cpu")[0]
    stage = next(iter(next(iter(json.loads(out.read_text())["settings"]["deployed"].values())).values()))
    assert {"model.layers.1.feed_forward", "model.layers.0.feed_forward", "lm_head"} <= set(stage["mapped"])
    held = [p for p in [*stage["mapped"], *stage["unmapped"]]
            if not stage["unmapped"].get(p, "").startswith("no ONNX node carries")]  # pos_emb: folded into constants
    ours = [p for p in held if p in stage["mapped"]
            or stage["unmapped"][p].startswith(("not found in the deployed", "inside the deployed graph's fused op"))]
    assert len(ours) >= 0.9 * len(held), stage["unmapped"]  # before: 24 of 27 (the router's two members left out)
    for member in ("model.layers.1.feed_forward.gate[1]", "model.layers.1.feed_forward.gate[2]"):  # weights, ids
        assert member in ours, stage["unmapped"][member]
    chosen = stage["mapped"]["model.layers.1.feed_forward.gate[2]"]["tensor"]
    assert chosen == "/model/layers.1/moe/router/TopK/output_1"
    assert stage["inside_fused"] == {q: "QMoE '/model/layers.1/moe/QMoE'" for q in (
        "model.layers.1.feed_forward.gate[1]", "model.layers.1.feed_forward.experts")}, stage["unmapped"]


def test_a_qwen35_hybrid_with_a_multimodal_rotary(tmp_path):
    """`--onnx fp32 -b ort,ort@int4 --generate 16` on Qwen3.5's builder files (tests/data/llm/qwen35, s29: Gated
    DeltaNet's LinearAttention with its conv and recurrent states, then attention whose rotary is multimodal —
    position_ids [3, batch, seq]): before, exit 3 ("Invalid rank for input: position_ids Got: 2 Expected: 3"); the
    file's positions are now made in its layout. The right answer, found without cp_debug: the INT4 file flips at
    greedy step 0 (151 → 34, the reference's margin 0.42), and no MatMulNBits at level 1 (alone or all) gives the
    tokens back: the weights' rounding on a thin margin, within precision."""
    entry = ANSWERS["models"]["qwen35"]
    rec = entry["files"]["int4"]
    assert entry["files"]["fp32"]["first_flip"] is None and rec["first_flip"] == 0 and not rec["cured_by_level1_at"]
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([ANSWERS["prompt"]]))
    res = cpdebug("bisect", "--onnx", LLM / "qwen35" / "fp32" / "model.onnx", "-b",
                  f"ort,ort@{LLM / 'qwen35' / 'int4'}", "--inputs", tmp_path / "prompt.npz", "--generate",
                  ANSWERS["tokens"])
    said = " ".join((res.stdout + res.stderr).replace("│", " ").split())
    assert res.returncode == 0, said
    assert f"greedy step 0: token {rec['torch_token']} → {rec['file_token']}" in said
    assert "accuracy_level=1 does not give the tokens back" in said and "within precision" in said
    assert "64 of 64 probes mapped" in said


@pytest.mark.long
def test_a_qwen35_gated_norm_maps_onto_the_builders_fused_op(tmp_path):
    """`--torch hf -b torch,ort@int4 --generate 16 --level all` on Qwen3.5 (tests/data/llm/qwen35/hf, the HF model
    the builder's files were made from): the gated norm `linear_attn.norm` (RMSNorm(x) · silu(z)) is the builder's
    `/model/layers.0/linear_attn/GatedRMSNorm` — no node carries the module's scope, and the structure search stops at
    the delta rule before it. Before: "31 of 32 probes mapped", the norm reported missing; now its output is the
    module's, read in the module's shape ([B · S · heads, 16] of the file's [B, S, heads · 16]) and compared: an
    error of the INT4 weights' order (0.14; the rows around it 0.08-0.16 relative RMS), cosine 0.99."""
    rec = ANSWERS["models"]["qwen35"]["files"]["int4"]
    res, said, out = _against_pytorch(tmp_path, "qwen35")
    assert res.returncode == 0, said
    assert f"greedy step 0: token {rec['torch_token']} → {rec['file_token']}" in said and "within precision" in said
    assert "32 of 32 probes mapped" in said, said  # before: 31 of 32, linear_attn.norm not found
    report = json.loads(out.read_text())
    stage = next(iter(next(iter(report["settings"]["deployed"].values())).values()))
    norm = "model.layers.0.linear_attn.norm"
    assert stage["mapped"][norm]["tensor"].startswith("/model/layers.0/linear_attn/GatedRMSNorm/output_0")
    assert norm not in stage["unmapped"] and norm not in stage.get("inside_fused", {})
    row = next(r for r in next(iter(report["results"].values())) if r["probe"] == norm)
    assert row["status"] == "ok" and 0 < row["rel_rmse"] < 0.5, row
