"""A QMoE's other expert formats (issue 116, s20; `benchmarks/llm_moe_formats.py`, answers_moe_formats.json found
without cp_debug): the tiny GPT-OSS's experts with zero points (`gptoss_moe/int4_zp`, uint4 blocks of 32 made by
hand: the builder writes none for the CPU) and with `qmoe_block_size=128` (`gptoss_moe/int4_b128`, the builder's:
wider than K = 64, a scale a row [E, N, 1]) — both not read before (the unit the rest's, 7 of 9 weights searched) —
read as ONNX Runtime's own QMoE run holds them, and bisected as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
MOE = LLM / "gptoss_moe"
ANSWERS = json.loads((LLM / "answers_moe_formats.json").read_text())


def _ort_against_reader(model, node, seed: int = 0) -> float:
    """One QMoE node of `model` run by ONNX Runtime on random tokens against one float MoE holding the experts as
    `qmoe_dequantized` reads them: the relative max difference of their outputs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from cp_debug.precision.qmoe import qmoe_dequantized

    inits = {i.name: i for i in model.graph.initializer}
    deq = qmoe_dequantized(node, inits)
    ins = list(node.input)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((9, deq[2].shape[-1])).astype(np.float32)
    p = rng.standard_normal((9, deq[2].shape[0])).astype(np.float32)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    plain = {k: v for k, v in attrs.items() if k not in ("expert_weight_bits", "block_size")}
    runs = {"QMoE": (["x", "p", *ins[2:]], attrs, []),
            "MoE": (["x", "p", "w1", ins[4], "w2", ins[7]], plain,
                    [numpy_helper.from_array(deq[2].astype(np.float32), "w1"),
                     numpy_helper.from_array(deq[5].astype(np.float32), "w2")])}
    got = {}
    for op, (inputs, kw, extra) in runs.items():
        g = helper.make_graph([helper.make_node(op, inputs, ["y"], domain="com.microsoft", **kw)], op,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                               helper.make_tensor_value_info("p", TensorProto.FLOAT, p.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [inits[n] for n in inputs if n in inits] + extra)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        got[op] = sess.run(None, {"x": x, "p": p})[0]
    return float(np.abs(got["QMoE"] - got["MoE"]).max() / np.abs(got["MoE"]).max())


def _asym(w: np.ndarray, bits: int, block: int):
    """[E, N, K] → onnxruntime's QMoE layout with zero points: packed, scales, zero points (a block each, or a row
    each where block is 0: zero points [E, ⌈N / pack⌉])."""
    e, n, k = w.shape
    b = w.reshape(e, n, -1, block or k)
    top = 2 ** bits - 1
    lo, hi = np.minimum(b.min(-1), 0), np.maximum(b.max(-1), 0)
    scale = ((hi - lo) / top).astype(np.float32)
    z = np.clip(np.round(-lo / scale), 0, top).astype(np.uint8)
    q = np.clip(np.round(b / scale[..., None]) + z[..., None], 0, top).astype(np.uint8).reshape(e, n, k)
    if not block:
        scale, z = scale[..., 0], z[..., 0]
    if bits == 8:
        return q, scale, z
    z = np.concatenate([z, np.zeros(z.shape[:-1] + (z.shape[-1] % 2,), np.uint8)], -1)
    return q[..., 0::2] | (q[..., 1::2] << 4), scale, z[..., 0::2] | (z[..., 1::2] << 4)


def test_the_experts_read_with_the_files_own_zero_points_bits_and_blocks():
    """The stored files' experts (zero points; a block wider than K) dequantized as ONNX Runtime's QMoE holds them
    (its run within 1e-5), as dequantized by hand without cp_debug (answers_moe_formats.json), within their 4-bit
    rounding of the FP32 file's; the unit's byte tables give Σ (q − zp)² exactly. Then the layouts the builder does
    not write for the CPU, made from the FP32 experts: 4 bits a row with zero points ([E, ⌈N/2⌉]), 8 bits in blocks
    with zero points and a row each without — each against ONNX Runtime's run (its 8-bit path differs from a float
    MoE by ~0.3 % on its own, measured) and the FP32 weights (a zero point off by one level is ~0.02 at 8 bits)."""
    import onnx
    from onnx import helper, numpy_helper

    from cp_debug.precision.qmoe import qmoe_dequantized, qmoe_nodes, qmoe_square_sums, qmoe_unread, qmoe_weights

    fp32 = onnx.load(MOE / "fp32/model.onnx")
    floats = [{w: numpy_helper.to_array(next(i for i in fp32.graph.initializer if i.name == n.input[src]))
               for w, src in ((2, 2), (5, 4))} for n in fp32.graph.node if n.op_type == "MoE"]
    for kind in ("int4_zp", "int4_b128"):
        m = onnx.load(MOE / kind / "model.onnx")
        inits = {i.name: i for i in m.graph.initializer}
        assert qmoe_unread(m) == []
        for node, ref, hand in zip(qmoe_nodes(m), floats, ANSWERS["experts"][kind]):
            assert _ort_against_reader(m, node) < 1e-5, (kind, node.name)
            got = qmoe_dequantized(node, inits)
            for w in (2, 5):
                err = float(np.sqrt(np.mean((got[w] - ref[w]) ** 2) / np.mean(ref[w] ** 2)))
                assert err == pytest.approx(hand["vs_fp32_rel_rms"][str(w)], rel=1e-4), (kind, w, err)
            for sums, (_, levels, _) in zip([s for s, _, _ in qmoe_square_sums(node, inits)],
                                            qmoe_weights(node, inits)):
                assert np.allclose(sums, (levels.astype(np.float64) ** 2).sum(axis=-1), rtol=1e-12)
    m = onnx.load(MOE / "int4_zp/model.onnx")
    node = qmoe_nodes(m)[0]
    for bits, block, zp, bound in ((4, 0, True, 1e-5), (8, 32, True, 0.01), (8, 0, False, 0.01)):
        ins = list(node.input)
        for (w, sc, zi), ref in zip(((2, 3, 11), (5, 6, 12)), (floats[0][2], floats[0][5])):
            packed, scale, z = _asym(ref, bits, block)
            if not zp:  # symmetric about the middle level
                scale = np.abs(ref).reshape(scale.shape + (-1,)).max(-1) / 127
                packed = (np.clip(np.round(ref / scale[..., None]), -127, 127) + 128).astype(np.uint8)
            for name, arr in ((ins[w], packed), (ins[sc], scale.astype(np.float32))):
                next(i for i in m.graph.initializer if i.name == name).CopyFrom(numpy_helper.from_array(arr, name))
            if zp:
                next(i for i in m.graph.initializer if i.name == ins[zi]).CopyFrom(numpy_helper.from_array(z, ins[zi]))
        del node.input[11:]
        node.input.extend(ins[11:13] if zp else [])
        del node.attribute[:]
        node.attribute.extend(a for a in qmoe_nodes(onnx.load(MOE / "int4_zp/model.onnx"))[0].attribute
                              if a.name not in ("expert_weight_bits", "block_size"))
        node.attribute.extend([helper.make_attribute("expert_weight_bits", bits)] +
                              ([helper.make_attribute("block_size", block)] if block else []))
        inits = {i.name: i for i in m.graph.initializer}
        got = qmoe_dequantized(node, inits)
        assert sorted(got) == [2, 5], (bits, block, zp)
        for w in (2, 5):
            err = float(np.sqrt(np.mean((got[w] - floats[0][w]) ** 2) / np.mean(floats[0][w] ** 2)))
            assert err < (0.1 if bits == 4 else 0.01), (bits, block, zp, w, err)
        assert _ort_against_reader(m, node) < bound, (bits, block, zp)


@pytest.mark.parametrize("kind", ["int4_zp", "int4_b128"])
def test_bisect_reads_their_experts(tmp_path, kind):
    """`--onnx fp32 -b ort,ort@FILE --generate 8` as a new user: every probe mapped, the flipped step as found
    without cp_debug (step 1, 9 → 72), the routing still read, both QMoEs' experts searched (9 quantized weights; 7
    before, "not read")."""
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([ANSWERS["prompt"]]))
    res = cpdebug("bisect", "--onnx", MOE / "fp32/model.onnx", "-b", f"ort,ort@{MOE / kind}", "--inputs",
                  tmp_path / "prompt.npz", "--generate", ANSWERS["tokens"], "--json", tmp_path / "r.json")
    said = " ".join((res.stdout + res.stderr).replace("│", " ").split())
    report = json.loads((tmp_path / "r.json").read_text())
    rec = ANSWERS["models"]["gptoss"]["files"][kind]
    assert res.returncode in (1, 4), said
    stage = next(iter(next(iter(report["settings"]["deployed"].values())).values()))
    assert not stage["unmapped"], stage["unmapped"]
    assert f"greedy step {rec['first_flip']}: token {rec['torch_token']} → {rec['file_token']}" in said
    assert "routing change at QMoE '/model/layers.0/moe/QMoE'" in said
    assert "(of 9 quantized weights)" in said and "not read" not in said, said
