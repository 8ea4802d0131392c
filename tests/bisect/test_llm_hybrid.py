"""A hybrid decoder as ONNX Runtime GenAI's builder makes it (tests/data/llm/lfm2: a tiny LFM2, layer 0 a gated
short convolution, layer 1 attention with q/k norms; `benchmarks/llm_hybrid.py`, answers_hybrid.json found
without cp_debug: every file decodes PyTorch's 16 tokens). The convolution's state is a cache input of its own
(`past.0.conv`, [batch, hidden, L-1], fed back from `present.0.conv`) beside the KV cache: before, every run of
the builder's files was refused ("--generate decodes a decoder LLM file: model.onnx has no input_ids input",
exit 2); and the builder's words for LFM2's modules (`operator_layernorm`, `ffn_layernorm`, `q_norm`, the final
norm) are the HF model's `operator_norm`, `ffn_norm`, `q_layernorm`, `embedding_norm` (19 → 26 of 26 probes).

tests/data/llm/granite4: an attention-only Granite-4 (`GraniteMoeHybridForCausalLM` without experts; the builder
0.18.0 builds no Mamba layer), whose builder files wire lm_head to layer 0's post-attention norm instead of the
final norm (the final norm's output unread): they flip at greedy step 6 (38 → 35, PyTorch's margin 5.2), and
`fp32_fixed` (lm_head reading the final norm, by hand) decodes PyTorch's 16 tokens (answers_hybrid.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cp_debug.bisect.subjects.decoder_feed import DecoderInputs, builder_scope, decoder_feed, present_of
from cp_debug.bisect.subjects.greedy import greedy
from cp_debug.graph.model import load_onnx
from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
LFM2 = LLM / "lfm2"
GRANITE4 = LLM / "granite4"
ANSWERS = json.loads((LLM / "answers_hybrid.json").read_text())
TORCH = ANSWERS["models"]["lfm2"]["torch_tokens"]


def _run(tmp_path, *args) -> tuple[int, str, dict]:
    """`cpdebug bisect ARGS --generate 16` on the corpus prompt: its exit code, what it said (one line), its report."""
    prompt, report = tmp_path / "prompt.npz", tmp_path / "report.json"
    np.savez(prompt, input_ids=np.array([ANSWERS["prompt"]]))
    res = cpdebug("bisect", *args, "--inputs", prompt, "--generate", ANSWERS["tokens"], "--json", report)
    said = " ".join((res.stdout + res.stderr).replace("│", " ").split())
    return res.returncode, said, json.loads(report.read_text())


@pytest.mark.parametrize("kind", ["fp32", "int4"])
def test_the_conv_state_is_fed_as_a_cache_and_decodes_pytorchs_tokens(kind):
    """`past.0.conv` is a cache input: zeros [1, 64, 2] at the prefill, then the step's `present.0.conv`; the file's
    16 greedy tokens are PyTorch's (as found without cp_debug)."""
    path = LFM2 / kind / "model.onnx"
    model = load_onnx(path)
    dec = DecoderInputs.of(model, path)
    assert dec is not None and "past.0.conv" in dec.past
    assert present_of("past.0.conv") == "present.0.conv"
    feed = decoder_feed(dec, {"input_ids": np.array([ANSWERS["prompt"]])})
    assert feed["past.0.conv"].shape == (1, 64, 2) and not feed["past.0.conv"].any()
    assert feed["past_key_values.1.key"].shape == (1, 2, 0, 16)
    assert list(greedy(model, dec, np.array([ANSWERS["prompt"]]), len(TORCH), path=path).tokens) == TORCH
    assert ANSWERS["models"]["lfm2"]["files"][kind]["first_flip"] is None


def test_lfm2s_module_names_are_the_builders_scopes():
    names = {"model.layers.0.operator_norm", "model.layers.1.self_attn.q_layernorm", "model.embedding_norm",
             "model.layers.0.ffn_norm", "model.layers.0.feed_forward.w1", "model.layers.1.self_attn.out_proj"}
    said = {s: builder_scope(s, 2, names) for s in (
        "model.layers.0.operator_layernorm", "model.layers.1.attn.q_norm", "model.layers.2.final_norm_layernorm",
        "model.layers.0.ffn_layernorm", "model.layers.0.mlp.gate_proj", "model.layers.1.attn.o_proj")}
    assert set(said.values()) == names, said
    assert builder_scope("model.layers.0.mlp.gate_proj", 2, {"model.layers.0.mlp.gate_proj"}) == \
        "model.layers.0.mlp.gate_proj"  # a Llama's words unchanged


def test_the_builders_int4_file_against_its_fp32_file(tmp_path):
    """`--onnx fp32 -b ort,ort@int4 --generate 16`: was exit 2 (the conv state no input cp_debug made); now the same
    16 tokens and within int4w-a8's precision, every probe mapped (the conv state's output `present.0.conv` too)."""
    code, said, report = _run(tmp_path, "--onnx", LFM2 / "fp32/model.onnx", "-b", f"ort,ort@{LFM2 / 'int4'}")
    assert code == 0, said
    assert "decodes the same 16 tokens" in said and "within precision" in said
    assert "43 of 43 probes mapped" in said
    assert "present.0.conv" in {p["name"] for p in report["probes"]}


@pytest.mark.long
def test_the_hf_model_against_the_builders_int4_file(tmp_path):
    """`--torch hf -b torch,ort@int4 --generate 16 --level all`: every module mapped (19 → 26 of 26: the norms by
    LFM2's words, the final `embedding_norm`), the same tokens, within precision."""
    code, said, _ = _run(tmp_path, "--torch", LFM2 / "hf", "-b", f"torch,ort@{LFM2 / 'int4'}", "--level", "all")
    assert code == 0, said
    assert "26 of 26 probes mapped" in said and "decodes the same 16 tokens" in said


def test_lm_head_wired_to_another_tensor_is_named(tmp_path):
    """`--onnx granite4/fp32_fixed -b ort,ort@granite4/fp32 --generate 16`: the flip at step 6, and the root's segment
    (logits) computed in the file from layer 0's post-attention norm where the reference computes it from the final
    norm: named as the file's wiring (before: a local fault at logits, no why)."""
    code, said, report = _run(tmp_path, "--onnx", GRANITE4 / "fp32_fixed/model.onnx", "-b",
                              f"ort,ort@{GRANITE4 / 'fp32'}")
    answer = ANSWERS["models"]["granite4"]["files"]["fp32"]
    assert answer["first_flip"] == 6 and answer["lm_head_on_final_norm_first_flip"] is None
    assert code == 1, said
    assert f"greedy step 6: token {answer['torch_token']} → {answer['file_token']}" in said
    (root,) = report["root_cause"].values()
    assert root["hint"].startswith("the file computes logits from /model/layers.0/post_attention_layernorm/output_0's "
                                   "output, where the reference computes it from "
                                   "/model/layers.2/final_norm_layernorm/output_0's: it wires another tensor into "
                                   "logits"), root["hint"]


@pytest.mark.long
def test_the_hf_granite4_against_the_builders_fp32_file(tmp_path):
    """`--torch granite4/hf -b torch,ort@granite4/fp32 --generate 16 --level all`: lm_head the root, computed from
    model.layers.0.post_attention_layernorm's output where the model's reads model.layers.1's (the final norm
    unmapped: the file's is unread); 22 → 24 of 25 probes (`shared_mlp.activation` the builder's `mlp/act_fn`); the
    builder's gate and up MatMuls held as the halves of the model's one `input_linear` (before: "4 of 12 weights
    differ")."""
    code, said, report = _run(tmp_path, "--torch", GRANITE4 / "hf", "-b", f"torch,ort@{GRANITE4 / 'fp32'}",
                              "--level", "all")
    assert code == 1, said
    (root,) = report["root_cause"].values()
    assert root["probe"] == "lm_head"
    assert root["hint"].startswith("the file computes lm_head from model.layers.0.post_attention_layernorm's "
                                   "output, where the reference computes it from model.layers.1's"), root["hint"]
    assert "24 of 25 probes mapped" in said and "weights differ" not in said


def test_a_rewired_lm_head_with_a_bias_of_its_own_is_named_as_wired(tmp_path):
    """The builder's lm_head wired to layer 0's post-attention norm *and* given a bias Add (builder 0.18.0 on a Llama
    with `mlp_bias` whose MLP is as wide as the vocabulary: it takes layer 0's gate_proj for the LM head, its bias with
    it; `benchmarks/llm_hidden.py`'s llama_wide): granite4/fp32 with that Add put in by hand. The Add, a node of the
    segment's own, hid the wiring (only "Add '/lm_head/Add' is only in the deployed graph" was said, as if the bias
    were the fault); the segment's entries share no probe with the reference's and are no input of the reference's
    entries, so the wiring is named first and the Add beside it."""
    import shutil

    import onnx
    from onnx import helper, numpy_helper

    folder = tmp_path / "biased"
    shutil.copytree(GRANITE4 / "fp32", folder)
    model = onnx.load(str(folder / "model.onnx"))  # its data read in: saved whole below
    head = next(n for n in model.graph.node if n.name == "/lm_head/MatMul")
    head.output[0] = "/lm_head/MatMul/output_0"
    vocab = next(numpy_helper.to_array(t).shape[1] for t in model.graph.initializer if t.name == head.input[1])
    bias = np.random.default_rng(0).normal(0, 0.05, vocab).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(bias, "lm_head.Add.bias"))
    model.graph.node.append(helper.make_node("Add", ["/lm_head/MatMul/output_0", "lm_head.Add.bias"], ["logits"],
                                             name="/lm_head/Add"))
    (folder / "model.onnx.data").unlink()
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    code, said, report = _run(tmp_path, "--onnx", GRANITE4 / "fp32_fixed/model.onnx", "-b", f"ort,ort@{folder}")
    assert code == 1, said
    (root,) = report["root_cause"].values()
    assert root["hint"].startswith("the file computes logits from /model/layers.0/post_attention_layernorm/output_0's "
                                   "output, where the reference computes it from "
                                   "/model/layers.2/final_norm_layernorm/output_0's: it wires another tensor into "
                                   "logits"), root["hint"]
    assert "Add '/lm_head/Add'" in root["hint"], root["hint"]
