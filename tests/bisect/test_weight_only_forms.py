"""Weight-only 4-bit files as ONNX Runtime's own quantizer writes them (issue 116), read with the files' own numbers:
`MatMulNBitsQuantizer` with zero points (is_symmetric=False), its QDQ format (opset 21 blockwise DequantizeLinear,
`block_size` along axis 0, INT4 or UINT4 with zero points), and a blockwise DequantizeLinear along axis 1 (the
quantizer writes axis 0 only, `quant_axes` is not read for QDQ: made here with its formula). Each weight cp_debug
reads equals what ONNX Runtime computes from the file (the node run alone), the files are judged at int4w with the
unit their own scales give, and every probe maps onto the float export's."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cp_debug.precision.held import file_precision
from cp_debug.precision.nbits import dequantize, dequantize_dq, dq_weight_nodes, weight_unit
from tests.cli_run import cpdebug

BLOCK = 32


def _export(path):
    """x [1, 4, 64] → MatMul [64, 128] → Relu → MatMul [128, 64]: a float MLP as an exporter writes it."""
    rng = np.random.default_rng(0)
    w1, w2 = ((rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for s in ((64, 128), (128, 64)))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc1.weight"], ["h"], name="/fc1/MatMul"),
         helper.make_node("Relu", ["h"], ["r"], name="/Relu"),
         helper.make_node("MatMul", ["r", "fc2.weight"], ["y"], name="/fc2/MatMul")], "mlp",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 64])],
        [numpy_helper.from_array(w1, "fc1.weight"), numpy_helper.from_array(w2, "fc2.weight")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))


def _quantized(plain, out, **kw):
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    cfg = DefaultWeightOnlyQuantConfig(block_size=BLOCK, bits=4, op_types_to_quantize=("MatMul",), **kw)
    q = MatMulNBitsQuantizer(onnx.load(str(plain)), algo_config=cfg)
    q.process()
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(q.model.model, str(out))
    return out


def _axis1(plain, out):
    """Each MatMul weight [K, N] as UINT4 blocks of 32 along N (axis 1) with zero points, by the quantizer's
    asymmetric formula (scale = (max − min) / 15, zero point = round(−min / scale)), behind a DequantizeLinear."""
    model = onnx.load(str(plain))
    graph = model.graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "MatMul"]:
        w = weights[node.input[1]]
        k, n = w.shape
        blocks = w.reshape(k, n // BLOCK, BLOCK)
        lo, hi = np.minimum(blocks.min(-1), 0), np.maximum(blocks.max(-1), 0)
        scale = ((hi - lo) / 15).astype(np.float32)
        zp = np.clip(np.round(-lo / scale), 0, 15)
        q = np.clip(np.round(blocks / scale[..., None]) + zp[..., None], 0, 15).reshape(k, n)
        name = node.input[1]
        graph.initializer.extend([
            helper.make_tensor(name + "_q", onnx.TensorProto.UINT4, [k, n], q.astype(np.uint8).ravel().tolist()),
            numpy_helper.from_array(scale, name + "_scale"),
            helper.make_tensor(name + "_zp", onnx.TensorProto.UINT4, list(zp.shape), zp.astype(np.uint8).ravel()
                               .tolist())])
        graph.node.insert(list(graph.node).index(node), helper.make_node(
            "DequantizeLinear", [name + "_q", name + "_scale", name + "_zp"], [name + "_dq"], axis=1,
            block_size=BLOCK, name=name + "_DequantizeLinear"))
        node.input[1] = name + "_dq"
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = 21  # block_size: opset 21's DequantizeLinear
    kept = [i for i in graph.initializer if i.name not in weights]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from onnxruntime.quantization import QuantFormat

    root = tmp_path_factory.mktemp("weight_only")
    plain = root / "plain" / "model.onnx"
    plain.parent.mkdir()
    _export(plain)
    return {"plain": plain,
            "zero_points": _quantized(plain, root / "zero_points" / "model.onnx", is_symmetric=False),
            "qdq": _quantized(plain, root / "qdq" / "model.onnx", is_symmetric=True, quant_format=QuantFormat.QDQ),
            "qdq_zp": _quantized(plain, root / "qdq_zp" / "model.onnx", is_symmetric=False,
                                 quant_format=QuantFormat.QDQ),
            "axis1": _axis1(plain, root / "axis1" / "model.onnx")}


def _ort_alone(node, inits: dict, feeds: dict, inputs=()) -> np.ndarray:
    """`node` run alone by ONNX Runtime on the file's initializers (and `feeds`)."""
    import onnxruntime as ort

    ins = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(feeds[n].shape)) for n in inputs]
    out = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "alone", ins, [out], [inits[n] for n in node.input if n in inits])
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: feeds[n] for n in inputs})[0]


def test_matmulnbits_zero_points_read_as_onnx_runtime_computes(files):
    """MatMulNBitsQuantizer(is_symmetric=False): packed 4-bit zero points per block; the weight cp_debug reads equals
    MatMulNBits run on the identity (ONNX Runtime's own dequantization), and lies within half a step of the float."""
    model = onnx.load(str(files["zero_points"]))
    inits = {i.name: i for i in model.graph.initializer}
    plain = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(files["plain"])).graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == 2 and all(len(n.input) > 3 and n.input[3] in inits for n in nodes)
    for node in nodes:
        w = dequantize(node, inits)
        k = w.shape[0]
        ort_w = _ort_alone(node, inits, {node.input[0]: np.eye(k, dtype=np.float32)}, [node.input[0]])
        np.testing.assert_allclose(w, ort_w, rtol=1e-6, atol=1e-7)
        float_w = plain[node.input[1].removesuffix("_Q4")]
        assert np.corrcoef(w.ravel(), float_w.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("name, axis", [("qdq", 0), ("qdq_zp", 0), ("axis1", 1)])
def test_blockwise_dequantize_linear_read_with_the_files_numbers(files, name, axis):
    """Opset 21's blockwise DequantizeLinear (block_size 32 along `axis`; INT4, or UINT4 with zero points): the
    weight cp_debug reads equals the node run by ONNX Runtime; the file is int4w, its unit from its own scales within
    15 % of the true rounding against the float weights."""
    model = onnx.load(str(files[name]))
    inits = {i.name: i for i in model.graph.initializer}
    plain = [numpy_helper.to_array(i) for i in onnx.load(str(files["plain"])).graph.initializer]
    nodes = dq_weight_nodes(model)
    assert len(nodes) == 2
    errs, norms = 0.0, 0.0
    for node in nodes:
        assert {a.name: helper.get_attribute_value(a) for a in node.attribute} == {"axis": axis, "block_size": BLOCK}
        w = dequantize_dq(node, inits)
        np.testing.assert_allclose(w, _ort_alone(node, inits, {}), rtol=1e-6, atol=1e-7)
        float_w = next(p for p in plain if p.shape == w.shape)
        errs += float(np.sum((w.astype(np.float64) - float_w) ** 2))
        norms += float(np.sum(float_w.astype(np.float64) ** 2))
    assert file_precision(model) == "int4w"
    assert weight_unit(model) == pytest.approx(np.sqrt(errs / norms), rel=0.15)


def test_weight_only_files_judged_at_int4w_every_probe_mapped(files, tmp_path):
    """The quantizer's files (MatMulNBits with zero points, QDQ blockwise along axis 0) and the axis-1 file against
    the float export: judged at int4w (they were "int8" — 8 half-steps of an INT8 amax/127 — for the QDQ ones),
    within it, every probe mapped."""
    out = tmp_path / "report.json"
    cands = [f"ort@{files[k].parent}" for k in ("zero_points", "qdq_zp", "axis1")]
    res = cpdebug("bisect", "--onnx", files["plain"], "-b", ",".join(["ort", *cands]), "--json", out)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    assert list(report["judged_at"].values()) == ["int4w"] * 3
    for stages in report["settings"]["deployed"].values():
        stage = next(iter(stages.values()))
        assert not stage["unmapped"] and len(stage["mapped"]) >= 3, stage


def _eight_bit_node(k: int, n: int, block: int = BLOCK):
    """A MatMulNBits of 8 bits with zero points, K not a multiple of the block (its last block padded), and its
    initializers by name."""
    rng = np.random.default_rng(1)
    blocks = -(-k // block)
    b = numpy_helper.from_array(rng.integers(0, 256, (n, blocks, block), dtype=np.uint8), "w_q8")
    s = numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32) + 0.01, "w_scales")
    z = numpy_helper.from_array(rng.integers(0, 256, (n, blocks), dtype=np.uint8), "w_zp")
    node = helper.make_node("MatMulNBits", ["x", "w_q8", "w_scales", "w_zp"], ["y"], domain="com.microsoft",
                            K=k, N=n, bits=8, block_size=block)
    return node, {t.name: t for t in (b, s, z)}


def _nbits_cases(files, k: int) -> list:
    """(node, initializers) of MatMulNBits: 4 bits with zero points (the quantizer's), without (the builder's Qwen2
    file: the middle level), and 8 bits with zero points of K = `k`."""
    cases = []
    for path in (files["zero_points"], "tests/data/llm/qwen2/int4/model.onnx"):
        model = onnx.load(str(path))
        inits = {i.name: i for i in model.graph.initializer}
        cases += [(node, inits) for node in model.graph.node if node.op_type == "MatMulNBits"][:4]
    return [*cases, _eight_bit_node(k, 24)]


@pytest.mark.parametrize("step", [2, 3, 7])
def test_matmulnbits_rows_at_a_stride_equal_the_whole_weights_rows(files, step):
    """`dequantize(node, inits, step)` (the rows the twin pairing samples, read from their packed bytes alone) is the
    whole dequantized weight's `[::step]` to the last bit: 4 bits with zero points (the quantizer's), without (the
    builder's Qwen2 file, the middle level), 8 bits with zero points and a padded last block."""
    for node, inits in _nbits_cases(files, 70):
        whole = dequantize(node, inits)
        assert whole is not None
        rows = dequantize(node, inits, step)
        assert rows.shape == whole[::step].shape and rows.dtype == whole.dtype
        assert np.array_equal(rows, whole[::step]), node.name


def test_matmulnbits_square_sums_from_the_packed_bytes_exact(files):
    """The weights' own rounding reads Σ (q − zp)² per block from the packed bytes through a table of two bytes at a
    time (`nbits._square_sums`): exactly the sum over the unpacked integers, for 4 bits with zero points, at the
    middle level, and 8 bits with zero points."""
    from cp_debug.precision.nbits import _blocks, _square_sums

    for node, inits in _nbits_cases(files, 64):
        q, scale, _, _ = _blocks(node, inits)
        sums, read_scale, _ = _square_sums(node, inits)
        q = q.astype(np.float64)
        assert np.array_equal(sums, np.einsum("nbk,nbk->nb", q, q)), node.name
        assert np.array_equal(read_scale, scale)


def test_matmulnbits_square_sums_compiled_and_numpy_alike(files, monkeypatch):
    """The table sums compiled by numba (`nbits._compiled_sums`: one pass, no gathered copy) give the numpy bands'
    sums to the last bit, and so the same weights' unit: 4 bits with zero points, at the middle level, 8 bits."""
    pytest.importorskip("numba")
    from cp_debug.precision import nbits

    cases = _nbits_cases(files, 64)
    assert nbits._compiled_sums() is not None
    compiled = [nbits._square_sums(node, inits)[0] for node, inits in cases]
    monkeypatch.setattr(nbits, "_KERNEL", [None])  # numba missing: the numpy bands
    for (node, inits), sums in zip(cases, compiled):
        assert sums.dtype == np.float64 and np.array_equal(sums, nbits._square_sums(node, inits)[0]), node.name
