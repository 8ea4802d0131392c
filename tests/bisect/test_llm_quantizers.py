"""MatMulNBitsQuantizer's other forms on the corpus's plain Qwen3 export (tests/data/llm/qwen3_massive/plain: a
massive channel in its residual stream), made here by ONNX Runtime's own quantizer (no data, < 1 s each): HQQ (float
zero points), blocks wider than the layer (block 128 of a 64-wide K), and the QDQ format (blockwise 4-bit
DequantizeLinear → MatMul), which ONNX Runtime fuses into MatMulNBits at accuracy_level 4 as it loads the file.

The right answers were found without cp_debug (greedy decoding in ONNX Runtime, /tmp-made files, s6): the QDQ file
(block 32) flips greedy step 7 (23 → 225) at the default optimisation level and decodes the plain file's 16 tokens
with `session.qdq_matmulnbits_accuracy_level=1` or at ORT_ENABLE_BASIC; lm_head's weight in float32 alone cures it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cp_debug.bisect.subjects.decoder_feed import DecoderInputs
from cp_debug.bisect.subjects.greedy import first_flip, greedy
from cp_debug.graph.model import load_onnx
from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
PLAIN = LLM / "qwen3_massive/plain/model.onnx"
PROMPT = np.array([json.loads((LLM / "answers.json").read_text())["prompt"]])
N = 16


def _quantized(tmp_path: Path, name: str, **kw) -> Path:
    """The plain export through `MatMulNBitsQuantizer` (`algo`: "hqq", else its default RTN; `qdq`: QDQ format)."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq
    from onnxruntime.quantization.quant_utils import QuantFormat

    fmt = QuantFormat.QDQ if kw.pop("qdq", False) else QuantFormat.QOperator
    block, sym = kw.pop("block_size", 32), kw.pop("is_symmetric", True)
    level = kw.pop("accuracy_level", None)
    if kw.pop("algo", None) == "hqq":
        conf = mnq.HQQWeightOnlyQuantConfig(block_size=block, bits=4)
    else:
        conf = mnq.DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=sym, accuracy_level=level,
                                                quant_format=fmt)
    q = mnq.MatMulNBitsQuantizer(onnx.load(str(PLAIN)), block_size=block, is_symmetric=sym, accuracy_level=level,
                                 algo_config=conf, quant_format=fmt)
    q.process()
    path = tmp_path / name / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(q.model.model, str(path))
    return path


@pytest.fixture(scope="module")
def hqq(tmp_path_factory) -> Path:
    """The HQQ file (block 32, 4 bits), made once (HQQ runs on torch)."""
    return _quantized(tmp_path_factory.mktemp("hqq"), "hqq", algo="hqq")


def _weight_error(path: Path) -> float:
    """The file's weights' relative RMS error against the plain export's (each matched by shape and distance)."""
    import onnx
    from onnx import numpy_helper

    from cp_debug.precision.nbits import dequantize, dequantize_dq, dq_weight_nodes, nbits_nodes

    ours = [numpy_helper.to_array(i) for i in onnx.load(str(PLAIN)).graph.initializer]
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    err = total = 0.0
    for w in [dequantize(n, inits) for n in nbits_nodes(model)] + [dequantize_dq(n, inits)
                                                                     for n in dq_weight_nodes(model)]:
        assert w is not None
        best = min((x for x in ours if x.shape == w.shape), key=lambda x: float(np.sum((x - w) ** 2)))
        err += float(np.sum((best - w) ** 2))
        total += float(np.sum(best ** 2))
    return (err / total) ** 0.5


@pytest.mark.parametrize("kw", [{"algo": "hqq"}, {"block_size": 128, "is_symmetric": False, "accuracy_level": 4},
                                {"qdq": True, "block_size": 16, "is_symmetric": False}],
                         ids=["hqq", "block128-asym", "qdq-block16-asym"])
def test_the_weights_rounding_is_read_with_the_files_own_numbers(tmp_path, kw, hqq):
    """Each file's weights dequantized as ONNX Runtime computes them (HQQ's float zero points: w = (q − zp) · scale;
    a block of 128 over K = 64 padded), and its rounding unit the error its weights carry against the plain export's
    (before: HQQ's weights unread; block 128's unit 0.05 where the weights are off by 0.09 — the padding counted)."""
    from cp_debug.precision.nbits import weight_unit

    path = hqq if kw.get("algo") == "hqq" else _quantized(tmp_path, "q", **kw)
    unit = weight_unit(load_onnx(path))
    assert unit is not None
    assert unit == pytest.approx(_weight_error(path), rel=0.15)


def test_hqq_weights_are_the_matmuls_own(hqq):
    """A MatMulNBits of HQQ's (float zero points) dequantized: ONNX Runtime's node fed the identity gives the same."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from cp_debug.precision.nbits import dequantize, nbits_nodes

    model = onnx.load(str(hqq))
    inits = {i.name: i for i in model.graph.initializer}
    node = nbits_nodes(model)[0]
    assert inits[node.input[3]].data_type == onnx.TensorProto.FLOAT  # HQQ's zero points
    k, n = (next(a.i for a in node.attribute if a.name == x) for x in ("K", "N"))
    one = helper.make_node("MatMulNBits", ["A", *node.input[1:]], ["Y"], domain="com.microsoft")
    one.attribute.extend(node.attribute)
    graph = helper.make_graph([one], "g", [helper.make_tensor_value_info("A", 1, [k, k])],
                              [helper.make_tensor_value_info("Y", 1, [k, n])], [inits[x] for x in node.input[1:] if x])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    w = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"A": np.eye(k, dtype=np.float32)})[0]
    np.testing.assert_allclose(dequantize(node, inits), w, atol=1e-6)


def test_a_qdq_files_fused_matmul_at_level_4_is_named_with_its_cure(tmp_path):
    """The QDQ file (block 32) decodes another token at step 7 than the plain export, as ONNX Runtime runs it: its
    DequantizeLinear → MatMul fused into MatMulNBits at the session's default accuracy_level 4; the session entry at
    1 gives the tokens back, and lm_head's MatMul alone in float32 does (`fused_dq.dq_cures`, verified here on the
    decode) — before, no setting was tried (no MatMulNBits in the file)."""
    from cp_debug.bisect.subjects.fused_dq import LEVEL_KEY, dq_cures, with_float_weights

    path = _quantized(tmp_path, "qdq", qdq=True)
    ref = greedy(load_onnx(PLAIN), DecoderInputs.of(load_onnx(PLAIN), PLAIN), PROMPT, N)
    model = load_onnx(path)
    dec = DecoderInputs.of(model, path)
    flip = first_flip(ref, greedy(model, dec, PROMPT, N, path=path))
    assert flip is not None and (flip.step, flip.ref_token, flip.cand_token) == (7, 23, 225)
    assert greedy(model, dec, PROMPT, N, config={LEVEL_KEY: "1"}).tokens == ref.tokens
    cure = dq_cures(model, dec, PROMPT, ref)
    assert cure is not None and len(cure.nodes) == 15 and cure.curing == ("node_linear_14_matmul_Q4",)
    assert "nodes_to_exclude=['node_linear_14']" in cure.line() and LEVEL_KEY in cure.line()
    assert greedy(with_float_weights(model, cure.curing), dec, PROMPT, N).tokens == ref.tokens


@pytest.mark.long
def test_bisect_generate_on_a_qdq_file(tmp_path):
    """`bisect --onnx plain -b ort,ort@QDQDIR --generate 16`: every projection mapped (the MLP's gate and up paired
    by their dequantized weights: 160 → 170 of 173 before), the flip at step 7 and its cure said, degraded at
    least (a setting alone flips it)."""
    path = _quantized(tmp_path, "qdq", qdq=True)
    np.savez(tmp_path / "prompt.npz", input_ids=PROMPT)
    out = tmp_path / "run.json"
    res = cpdebug("bisect", "--onnx", PLAIN, "-b", f"ort,ort@{path.parent}", "--inputs", tmp_path / "prompt.npz",
                  "--generate", N, "--json", out)
    assert res.returncode in (1, 4), res.stderr
    report = json.loads(out.read_text())
    assert "greedy step 7: token 23 → 225" in res.stdout.replace("\n", " ") or any(
        "greedy step 7: token 23 → 225" in w for w in report["warnings"])
    assert any("node_linear_14_matmul_Q4 alone unfused" in w for w in report["warnings"])
    assert not any(f"{m}/MatMul" in w for w in report["warnings"] if "not mapped" in w
                   for m in ("gate_proj", "up_proj"))


@pytest.mark.long
def test_an_hqq_lm_head_is_confirmed_by_restoring_the_logits(tmp_path, hqq):
    """HQQ's lm_head on the massive channel (its zero weight column off zero: greedy step 0 flips): the root
    lm_head, confirmed by its tensor — the graph's logits output — replaced by the reference's (before: a graph
    output's restoration reached only its readers, none: "confirmed by no intervention", 48.9× → 48.9×)."""
    path = hqq
    np.savez(tmp_path / "prompt.npz", input_ids=PROMPT)
    out = tmp_path / "run.json"
    res = cpdebug("bisect", "--onnx", PLAIN, "-b", f"ort,ort@{path.parent}", "--inputs", tmp_path / "prompt.npz",
                  "--generate", N, "--json", out)
    assert res.returncode == 1, res.stderr
    root = json.loads(out.read_text())["root_cause"][f"ort@{path.parent}"]
    assert root["probe"] == "m.lm_head/MatMul" and root["confirmed"] is True


def test_an_hqq_lm_head_weight_is_named_with_nodes_to_exclude(hqq):
    """HQQ's lm_head (no accuracy_level in the file: the weights' doing) flips greedy step 0 (154 → 232, PyTorch's
    margin 2.02): lm_head's weight, matched to the plain export's by its values, alone in float32 gives the tokens
    back — the quantizer's `nodes_to_exclude=['node_linear_14']` (found without cp_debug likewise)."""
    from cp_debug.bisect.subjects.weight_cures import float_arrays, matched, weight_cures

    plain = load_onnx(PLAIN)
    ref = greedy(plain, DecoderInputs.of(plain, PLAIN), PROMPT, N)
    model = load_onnx(hqq)
    dec = DecoderInputs.of(model, hqq)
    flip = first_flip(ref, greedy(model, dec, PROMPT, N, path=hqq))
    assert flip is not None and (flip.step, flip.ref_token, flip.cand_token) == (0, 154, 232)
    assert len(matched(model, float_arrays(plain))) == 15  # every projection and lm_head
    cure = weight_cures(model, float_arrays(plain), dec, PROMPT, ref, builder=False)
    assert cure is not None and cure.curing == ("node_linear_14_Q4",)
    assert "nodes_to_exclude=['node_linear_14']" in cure.line()


def _gathered(model, name: str) -> np.ndarray:
    """The table ONNX Runtime's GatherBlockQuantized node `name` gives for every row (all ids gathered)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    node = next(n for n in model.graph.node if n.name == name)
    inits = {i.name: i for i in model.graph.initializer}
    rows = inits[node.input[2]].dims[0]
    one = helper.make_node("GatherBlockQuantized", [node.input[0], "ids", *node.input[2:]], ["Y"],
                           domain="com.microsoft")
    one.attribute.extend(node.attribute)
    graph = helper.make_graph([one], "g", [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [rows])],
                              [helper.make_tensor_value_info("Y", 1, None)],
                              [inits[x] for x in node.input if x in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"ids": np.arange(rows, dtype=np.int64)})[0]


def test_quantized_embeddings_and_lm_heads_level_flip_it_together():
    """The builder's INT4 file with `op_types_to_quantize=MatMul/Gather` (tests/data/llm/qwen3_massive/int4_gather:
    GatherBlockQuantized embeddings, whose 32-value block holding the massive channel rounds the rest) flips greedy
    step 9 (86 → 207). Found without cp_debug: no single node's level 1 cures it (every one at level 1 neither), the
    builder's file with the embeddings left in float flips at step 7 (its lm_head at level 4), at level 1 with them
    in float none flips. Here: the embedding table dequantized with the file's own numbers, and the 1-minimal cure
    the embedding's float weight with lm_head at level 1, verified on the decode."""
    from cp_debug.bisect.subjects.greedy import level_cures
    from cp_debug.bisect.subjects.weight_cures import FLOAT, LEVEL, float_arrays, quantized_weights, weight_cures

    fp32 = load_onnx(LLM / "qwen3_massive/fp32/model.onnx")
    ref = greedy(fp32, DecoderInputs.of(fp32, LLM / "qwen3_massive/fp32/model.onnx"), PROMPT, N)
    path = LLM / "qwen3_massive/int4_gather/model.onnx"
    model = load_onnx(path)
    dec = DecoderInputs.of(model, path)
    flip = first_flip(ref, greedy(model, dec, PROMPT, N, path=path))
    assert flip is not None and (flip.step, flip.ref_token, flip.cand_token) == (9, 86, 207)
    table = quantized_weights(model)["/model/embed_tokens/Gather_Q4"]
    np.testing.assert_allclose(table, _gathered(model, "/model/embed_tokens/Gather_Q4"), atol=1e-6)
    theirs = next(w for w in float_arrays(fp32) if w.shape == (256, 64))
    assert np.abs(table[:, 32:] - theirs[:, 32:]).max() < 0.1  # the other block: rounded
    assert (table[:, :32][:, np.arange(32) != 5] == 0).mean() > 0.9  # the massive channel's block: ~all zero
    assert not level_cures(model, dec, PROMPT, ref).all_at_level1
    cure = weight_cures(model, float_arrays(fp32), dec, PROMPT, ref, builder=True)
    assert cure is not None and cure.curing == ()
    assert set(cure.together) == {(FLOAT, "/model/embed_tokens/Gather_Q4"), (LEVEL, "/lm_head/MatMul_Q4")}
    assert "nodes_to_exclude=/model/embed_tokens/Gather accuracy_level=1" in cure.line()


@pytest.mark.long
def test_torch_given_the_hf_folder(tmp_path):
    """`--torch HF_FOLDER -b torch,ort@QDQDIR --generate 16`: the folder the files were made from, read as the
    builder reads it (before: "--torch wants FILE.py:FUNC"); the flip and the fused MatMul's cure as with --onnx."""
    path = _quantized(tmp_path, "qdq", qdq=True)
    np.savez(tmp_path / "prompt.npz", input_ids=PROMPT)
    res = cpdebug("bisect", "--torch", LLM / "qwen3_massive/hf", "-b", f"torch,ort@{path.parent}", "--inputs",
                  tmp_path / "prompt.npz", "--generate", N)
    assert res.returncode in (1, 4), res.stderr
    text = " ".join(res.stdout.split())
    assert "greedy step 7: token 23 → 225" in text and "node_linear_14_matmul_Q4 alone unfused" in text


def test_the_builders_qkv_proj_holds_the_models_weights():
    """The weights check of the builder's FP32 file against the HF model: its one `qkv_proj` MatMul per layer is the
    model's q_proj, k_proj and v_proj stacked (before: "2 of 12 weights differ", qkv_proj [64, 128], beside the MLP's
    up_proj of that shape — said on OLMo's `--torch` run as if the file held other weights)."""
    from transformers import AutoModelForCausalLM

    from cp_debug.lint.weights import check_weights

    module = AutoModelForCausalLM.from_pretrained(LLM / "qwen3_massive/hf")
    check = check_weights(module, load_onnx(LLM / "qwen3_massive/fp32/model.onnx"), "model.onnx")
    assert check.compared >= 12 and check.differ == 0, check.line()


def test_the_builders_int4_weights_are_said_as_4_bit_blocks():
    """The weights check of the builder's INT4 file against the HF model: its MatMulNBits pack 4-bit weights in UINT8
    bytes, blocks of 32 (before: "weights not compared (the file holds INT8 weights)", on every `--torch` run against
    an INT4 file: issue 116's weights "INT8")."""
    from transformers import AutoModelForCausalLM

    from cp_debug.lint.weights import check_weights

    module = AutoModelForCausalLM.from_pretrained(LLM / "qwen3_massive/hf")
    line = check_weights(module, load_onnx(LLM / "qwen3_massive/int4/model.onnx"), "model.onnx").line()
    assert line == "model.onnx: weights not compared (the file holds 4-bit MatMulNBits weights in blocks of 32)"


@pytest.mark.long
def test_granites_scaled_embedding_is_mapped_to_its_gather(tmp_path):
    """`--torch granite/hf -b torch,ort@granite/int4 --generate 4` (the builder's Granite: embedding_multiplier 12
    as a Mul under the /model/embed_tokens/ scope; the HF folder stored in float16, read as float32): the model's
    embed_tokens is the file's Gather, not the × 12 after it (before: "diverged from model.embed_tokens", 42× its
    budget, on a file that decodes PyTorch's tokens), and the file is within its precision."""
    out = tmp_path / "run.json"
    res = cpdebug("bisect", "--torch", LLM / "granite/hf", "-b", f"torch,ort@{LLM / 'granite/int4'}", "--generate", 4,
                  "--json", out)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    report = json.loads(out.read_text())
    (mapped,) = report["settings"]["deployed"].values()
    (stage,) = mapped.values()
    assert stage["mapped"]["model.embed_tokens"]["tensor"] == "/model/embed_tokens/Gather/output_0"


def _float_twin(path: Path, out: Path) -> Path:
    """The builder's FP32 form of its tied INT4 file, from the file's own weights: each MatMulNBits a MatMul of its
    dequantized weight, the embedding a Gather of lm_head's weight transposed (what `-p fp32` writes for tied
    embeddings: /model/embed_tokens/Transpose → Gather)."""
    import shutil

    import onnx
    from onnx import helper, numpy_helper

    from cp_debug.bisect.subjects.weight_cures import quantized_weights, with_float

    model = load_onnx(path)
    weights = quantized_weights(model)
    gather = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    lm_head = next(n for n in model.graph.node if n.op_type == "MatMulNBits" and n.output[0] == "logits")
    np.testing.assert_allclose(weights[gather.name], weights[lm_head.name].T)  # one packed table, read twice
    twin = with_float(model, {k: v for k, v in weights.items() if k != gather.name})
    w = lm_head.name + "::float_weight"
    nodes = []
    for n in twin.graph.node:
        if n.name == gather.name:
            nodes += [helper.make_node("Transpose", [w], ["/model/embed_tokens/Transpose/output_0"],
                                       name="/model/embed_tokens/Transpose"),
                      helper.make_node("Gather", ["/model/embed_tokens/Transpose/output_0", n.input[1]],
                                       n.output, name="/model/embed_tokens/Gather")]
        elif n.op_type != "Reshape" or n.output[0] != gather.input[0]:
            n.name = n.name.removesuffix("_Q4")  # the FP32 file's names (/lm_head/MatMul)
            nodes.append(n)
    del twin.graph.node[:]
    twin.graph.node.extend(nodes)
    used = {x for n in nodes for x in n.input}
    kept = [i for i in twin.graph.initializer if i.name in used]
    del twin.graph.initializer[:]
    twin.graph.initializer.extend(numpy_helper.from_array(numpy_helper.to_array(i), i.name) for i in kept)
    out.mkdir(parents=True)
    onnx.save(twin, str(out / "model.onnx"))
    shutil.copy(path.parent / "genai_config.json", out / "genai_config.json")
    return out / "model.onnx"


def test_tied_embeddings_gathered_from_lm_heads_packed_weight_are_mapped(tmp_path):
    """The builder's INT4 file of a tied model (tests/data/llm/smollm_tied/int4: SmolLM-like Llama, llama3 rope
    scaling; the embedding a GatherBlockQuantized over lm_head's packed weight Reshaped, its FP32 file a Gather of
    lm_head's weight Transposed): every probe of the FP32 form mapped (before: 23 of 32 — the embedding, the norms
    and the final norm missing, "no Gather after the matching node"), within its precision."""
    path = LLM / "smollm_tied/int4/model.onnx"
    ref = _float_twin(path, tmp_path / "fp32")
    out = tmp_path / "run.json"
    res = cpdebug("bisect", "--onnx", ref, "-b", f"ort,ort@{path.parent}", "--json", out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    missing = [line for line in res.stdout.splitlines() if line.rstrip().endswith("missing")]
    assert not missing, missing
    assert json.loads(out.read_text())["outcome"] == "within_precision"


def test_no_weight_search_past_its_size(monkeypatch):
    """The weight search decodes up to 40 float copies of the candidate's file: on the 0.5 B pair of
    `benchmarks/llm_size.py` (a 296 MB INT4 file) it filled 29 GB of /tmp and ended exit 2 after 379 s. Past
    `WEIGHT_SEARCH_BYTES` it is not run, and said; below it (the stored file) it finds the embedding and lm_head."""
    from cp_debug.bisect.subjects import generation
    from cp_debug.bisect.subjects.weight_cures import float_arrays

    fp32 = load_onnx(LLM / "qwen3_massive/fp32/model.onnx")
    ref = greedy(fp32, DecoderInputs.of(fp32, LLM / "qwen3_massive/fp32/model.onnx"), PROMPT, N)
    path = LLM / "qwen3_massive/int4_gather/model.onnx"
    model = load_onnx(path)
    asked = []

    def weights():
        asked.append(1)
        return float_arrays(fp32)

    monkeypatch.setattr(generation, "WEIGHT_SEARCH_BYTES", 1 << 10)
    said = generation.decode_answer(ref, model, DecoderInputs.of(model, path), path, PROMPT, N, "ref",
                                    reference_weights=weights).lines
    assert any("no weight search past 0 MB of weights" in line for line in said), said
    assert not asked  # the reference's float weights not even read
    monkeypatch.undo()
    said = generation.decode_answer(ref, model, DecoderInputs.of(model, path), path, PROMPT, N, "ref",
                                    reference_weights=weights).lines
    assert any("accuracy_level=1" in line and "Gather" in line for line in said), said
