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
