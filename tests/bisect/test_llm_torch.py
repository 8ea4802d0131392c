"""`bisect --generate N` with the PyTorch model as the reference (`--torch` returning the HF causal LM the builder's
files were made from) against the builder's file (`-b torch,ort@DIR`): the decode, the flipped step, the cure, and
that step's forward mapped module by module onto the file fixed to its prefill (tests/data/llm, answers.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cp_debug.bisect.subjects.decoder_feed import IDS, DecoderInputs, decoder_feed, prefilled
from cp_debug.graph.model import load_onnx
from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
ANSWERS = json.loads((LLM / "answers.json").read_text())
HERE = Path(__file__).resolve().parent


def _run(model, feed):
    import onnxruntime as ort

    from cp_debug.graph.session import session_source

    with session_source(model) as src:
        sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
        return sess.run(["logits"], feed)[0]


def test_a_builder_file_fixed_to_its_prefill_computes_as_fed():
    """The file with its mask, positions and empty cache held as constants (input_ids → logits, as a causal LM's
    export): the same logits as the file fed those inputs by decoder_feed; its cache outputs left inside, the final
    norm's residual sum (the last layer's output) written."""
    path = LLM / "qwen3_massive/int4/model.onnx"
    model = load_onnx(path)
    dec = DecoderInputs.of(model, path)
    ids = np.array([ANSWERS["prompt"] + [5, 9]])
    fixed = prefilled(model, dec, ids.shape[1], [IDS], ["logits"])
    # the last layer's output written too: the final norm's residual sum, which the builder leaves unwritten
    assert [i.name for i in fixed.graph.input] == [IDS] and [o.name for o in fixed.graph.output] == \
        ["logits", "/model/layers.2/final_norm_layernorm/output_3"]
    dims = [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 10]
    np.testing.assert_allclose(_run(fixed, {IDS: ids}), _run(model, decoder_feed(dec, {IDS: ids}))[:, :, :],
                               rtol=1e-5, atol=1e-5)
    assert prefilled(model, dec, 10, dec.names, ["logits"]) is None  # nothing to hold


@pytest.mark.long
def test_generate_with_the_torch_model_as_reference(tmp_path):
    """The HF model decodes greedily (answers.json's torch tokens), the builder's INT4 file flips step 7 (23 → 225),
    lm_head's level 1 alone cures it (verified on the decode), and the flipped step's forward maps the norms (the
    fused SkipSimplifiedLayerNormalization's output 0, not its residual sum; the final norm by the builder's scope)
    and lm_head: the first divergent and a local fault, as with the builder's FP32 file as the reference."""
    out = tmp_path / "report.json"
    res = cpdebug("bisect", "--torch", f"{HERE / 'llm_hf_models.py'}:qwen3_massive", "-b",
                  f"torch,ort@{LLM / 'qwen3_massive/int4'}", "--generate", ANSWERS["tokens"], "--level", "all",
                  "--json", out)
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode in (1, 4), said
    want = ANSWERS["models"]["qwen3_massive"]
    assert str(want["torch_tokens"]) in said
    assert "greedy step 7: token 23 → 225" in said
    assert "accuracy_level=1 on /lm_head/MatMul_Q4 alone gives the reference's tokens back" in said
    assert "nodes_to_exclude=/lm_head/MatMul" in said
    report = json.loads(out.read_text())
    stage = next(iter(next(iter(report["settings"]["deployed"].values())).values()))
    mapped = {q: v["tensor"] for q, v in stage["mapped"].items()}
    assert mapped["model.layers.1.post_attention_layernorm"].endswith("post_attention_layernorm/output_0")
    assert mapped["model.norm"].startswith("/model/layers.2/final_norm_layernorm/")  # the builder's scope, read
    assert mapped["model.layers.0.self_attn.o_proj"] == "/model/layers.0/attn/o_proj/MatMul/output_0"
    assert mapped["model.layers.0"] == "/model/layers.1/input_layernorm/output_3"  # the residual sum: layer 0's out
    assert mapped["lm_head"] == "logits" and len(mapped) >= 31
    # the fused qkv_proj's columns (probes/fused_parts.py), Qwen3's q_norm in the builder's [1, S, 64] reshaped to the
    # module's [1, S, heads, 16], and the last layer's output: the final norm's residual sum the prefill copy writes
    assert mapped["model.layers.0.self_attn.k_proj"] == "/model/layers.0/attn/qkv_proj/MatMul/output_0::cols[64:96]"
    assert mapped["model.layers.1.self_attn.q_norm"].startswith("/model/layers.1/attn/q_norm/Reshape_2/output_0::as")
    assert mapped["model.layers.1"] == "/model/layers.2/final_norm_layernorm/output_3"
    first = [line for line in res.stdout.splitlines() if "◀ first" in line]
    assert first and "lm_head" in first[0]
    assert "root cause: lm_head" in said and "local fault at lm_head" in said and "only in the deployed" not in said


@pytest.mark.long
def test_the_hf_model_against_a_builder_file_without_generate():
    """`--torch` (the HF causal LM, its one input) against the builder's INT4 file (14 inputs): the file fixed to the
    prompt's prefill, run (it was "unknown input 'attention_mask'" / "extra input(s)" before), the final norm mapped by
    the builder's scope, lm_head the root cause beyond int4w-a8."""
    res = cpdebug("bisect", "--torch", f"{HERE / 'llm_hf_models.py'}:qwen3_massive", "-b",
                  f"torch,ort@{LLM / 'qwen3_massive/int4'}")
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode in (1, 4), said
    assert "made by cp_debug for the 8-token prefill" in said and "root cause: lm_head" in said
    norm = next(line for line in res.stdout.splitlines() if " model.norm " in line)
    assert "missing" not in norm and "ok" in norm


def test_generate_with_torch_wants_a_deployed_decoder_file():
    """The candidate of a --torch decode is the builder's file (ort@DIR): without one, one line (exit 2), before
    the model loads."""
    from cp_debug.backends.spec import parse_backends
    from cp_debug.bisect.subjects.torch_generation import torch_generation_subject
    from cp_debug.errors import BadInputError

    specs = [s for _, s in parse_backends("torch,ort")]
    with pytest.raises(BadInputError, match="ort@DIR"):
        torch_generation_subject(f"{HERE / 'llm_hf_models.py'}:qwen3_massive", None, 0, 4, specs)


def _prompts(tmp_path, rows: int = 4):
    """The corpus prompt, then `rows` − 1 drawn from the vocabulary (seed 5)."""
    rng = np.random.default_rng(5)
    ids = [ANSWERS["prompt"]] + [list(rng.integers(0, 256, 8)) for _ in range(rows - 1)]
    path = tmp_path / "prompts.npz"
    np.savez(path, input_ids=np.array(ids))
    return path


def test_sweep_over_prompts_gives_the_share_that_flips_and_where(tmp_path):
    """`sweep --generate 32` over 4 prompts (input_ids rows): the massive-activation INT4 file flips every one (the
    corpus prompt at step 7, answers.json), lm_head's level 1 (the first prompt's cure) gives all four back (exit 4);
    its level-1 file flips none (exit 0). OUT/generate.json holds each prompt's step (its schema checked), and the
    first flipped prompt's step bisected (lm_head's logits, the setting in the builder's terms)."""
    prompts = _prompts(tmp_path)
    fp32 = LLM / "qwen3_massive/fp32/model.onnx"
    res = cpdebug("sweep", "--onnx", fp32, "-b", f"ort,ort@{LLM / 'qwen3_massive/int4'}", "--inputs", prompts,
                  "--generate", ANSWERS["tokens"], "--out", tmp_path / "int4")
    assert res.returncode == 4, res.stdout + res.stderr
    doc = json.loads((tmp_path / "int4" / "generate.json").read_text())
    assert doc["flipped"] == 4 and doc["share"] == 1.0
    first = doc["prompts"][0]["flip"]
    assert (first["step"], first["ref_token"], first["cand_token"]) == (7, 23, 225)
    assert doc["steps"] == [p["flip"]["step"] for p in doc["prompts"]]
    assert doc["cure"]["curing"] == ["/lm_head/MatMul_Q4"] and doc["cure"]["verified"] == 4
    assert "4 of 4 prompts flip (100%)" in res.stdout
    # the first flipped prompt's step bisected as `bisect --generate` bisects it: lm_head's logits, a local fault,
    # and the setting that alone flips it, in the builder's terms (answers.json's)
    b = doc["bisect"]
    assert (b["prompt"], b["step"], b["root_cause"], b["exit_code"]) == (0, 7, "logits", 1), b
    assert "local fault at logits" in b["verdict"] and "nodes_to_exclude=/lm_head/MatMul" in b["setting"]
    assert "prompt 0's greedy step 7 bisected" in res.stdout and "root cause logits" in res.stdout
    rerun = np.load(b["inputs"])["input_ids"]
    assert rerun.tolist() == [ANSWERS["prompt"]]
    res = cpdebug("sweep", "--onnx", fp32, "-b", f"ort,ort@{LLM / 'qwen3_massive/int4_level1'}", "--inputs",
                  prompts, "--generate", ANSWERS["tokens"], "--out", tmp_path / "level1")
    assert res.returncode == 0 and "0 of 4 prompts flip" in res.stdout, res.stdout + res.stderr
    doc = json.loads((tmp_path / "level1" / "generate.json").read_text())
    assert doc["cure"] is None and doc["bisect"] is None and "bisected" not in res.stdout


@pytest.mark.long
def test_sweep_over_seeded_prompts_with_the_torch_model(tmp_path):
    """`sweep --torch … --n 3 --generate 32`: the HF model as the reference over 3 seeded prompts against the
    builder's INT4 file; every prompt flips and lm_head's level 1 gives all three back; the first prompt's flipped step
    bisected names lm_head."""
    res = cpdebug("sweep", "--torch", f"{HERE / 'llm_hf_models.py'}:qwen3_massive", "-b",
                  f"torch,ort@{LLM / 'qwen3_massive/int4'}", "--n", "3", "--generate", ANSWERS["tokens"], "--out",
                  tmp_path / "s")
    assert res.returncode == 4, res.stdout + res.stderr
    doc = json.loads((tmp_path / "s" / "generate.json").read_text())
    assert len(doc["prompts"]) == 3 and doc["flipped"] == 3 and doc["cure"]["verified"] == 3
    b = doc["bisect"]  # the first prompt's flipped step, bisected with the HF model as the reference
    assert b["prompt"] == 0 and b["exit_code"] in (1, 4) and "lm_head" in b["verdict"], b
    assert "nodes_to_exclude=/lm_head/MatMul" in b["setting"]


def test_sweep_generate_wants_a_decoder_model(tmp_path):
    res = cpdebug("sweep", "--generate", "4", "--out", tmp_path / "s")
    assert res.returncode == 2 and "--onnx FILE or --torch" in res.stderr, res.stdout + res.stderr
    res = cpdebug("sweep", "--onnx", LLM / "llama/fp32/model.onnx", "-b", f"ort,ort@{LLM / 'llama/int4'}",
                  "--generate", "4", "--data", tmp_path, "--out", tmp_path / "s")
    assert res.returncode == 2 and "--data: not with --generate" in res.stderr, res.stdout + res.stderr


def test_the_builders_scopes_read_as_the_hf_models():
    from cp_debug.bisect.subjects.decoder_feed import builder_scope

    assert builder_scope("model.layers.1.attn.o_proj", layers=2) == "model.layers.1.self_attn.o_proj"
    assert builder_scope("model.layers.2.final_norm_layernorm", layers=2) == "model.norm"
    assert builder_scope("model.layers.2", layers=2) is None
    assert builder_scope("model.layers.0.mlp.up_proj", layers=2) == "model.layers.0.mlp.up_proj"
    assert builder_scope("lm_head", layers=2) == "lm_head"


def test_generate_without_input_ids_in_the_inputs_is_one_line(tmp_path):
    from cp_debug.backends.spec import parse_backends
    from cp_debug.bisect.subjects.generation import generation_subject
    from cp_debug.errors import BadInputError

    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, ids=np.array([ANSWERS["prompt"]]))
    specs = [s for _, s in parse_backends(f"ort,ort@{LLM / 'llama/int4'}")]
    with pytest.raises(BadInputError, match="holds no input_ids"):
        generation_subject(LLM / "llama/fp32/model.onnx", wrong, 0, 4, specs)
