"""The one reader of a Q/DQ pair (`cp_debug/graph/qdq_pair.py`): what it says of a pair — its type's levels, its
clip ends, its axis — is what ONNX Runtime computes when it runs that pair, for every quantized type it runs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from cp_debug.graph.qdq_pair import CONSTANT, INITIALIZER, QdqIndex, own_pair

WIDE = np.linspace(-1e5, 1e5, 4001, dtype=np.float32)  # past every type's ends at the scales below


def _pair_model(qtype: int, scale: float, zero, *, opset: int = 21, constant: bool = False, zero_point: bool = True):
    """x → QuantizeLinear → DequantizeLinear → y, its scale and zero point initializers (or `Constant` nodes)."""
    s = numpy_helper.from_array(np.array(scale, np.float32), "s")
    z = helper.make_tensor("z", qtype, [], [zero])
    nodes, inits = [], []
    if constant:
        nodes += [helper.make_node("Constant", [], ["s"], value=s), helper.make_node("Constant", [], ["z"], value=z)]
    else:
        inits += [s, z] if zero_point else [s]
    q_in = ["x", "s", "z"] if zero_point else ["x", "s"]
    nodes += [helper.make_node("QuantizeLinear", q_in, ["xq"], name="q"),
              helper.make_node("DequantizeLinear", ["xq", *q_in[1:]], ["y"], name="dq")]
    g = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [WIDE.size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [WIDE.size])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _run(model) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": WIDE})[0]


@pytest.mark.parametrize("qtype,zero,name", [
    (TensorProto.INT8, 3, "int8"), (TensorProto.UINT8, 128, "uint8"), (TensorProto.INT16, -7, "int16"),
    (TensorProto.UINT16, 40000, "uint16"), (TensorProto.INT4, 1, "int4"), (TensorProto.UINT4, 8, "uint4"),
    (TensorProto.FLOAT8E4M3FN, 0, "float8e4m3fn"), (TensorProto.FLOAT8E5M2, 0, "float8e5m2"),
])
def test_the_ends_are_what_onnx_runtime_clips_at(qtype, zero, name):
    model = _pair_model(qtype, 0.5, zero)
    pair = QdqIndex.of(model).pair("y")  # the tensor a DequantizeLinear writes
    y = _run(model)
    assert pair.qtype == name and pair.per_tensor and pair.step == 0.5 and pair.axis is None
    assert (float(y.min()), float(y.max())) == pytest.approx(pair.ends, rel=1e-6)
    assert pair.quantize.name == "q" and [d.name for d in pair.dequantize] == ["dq"] and pair.tensor == "x"
    assert pair.scale_from == pair.zero_from == INITIALIZER and pair.from_initializers


def test_constant_nodes_and_the_tensor_a_quantizer_reads():
    model = _pair_model(TensorProto.INT8, 0.25, -2, constant=True)
    pair = QdqIndex.of(model).pair("x")  # the tensor a QuantizeLinear reads
    y = _run(model)
    assert pair.scale_from == pair.zero_from == CONSTANT and not pair.from_initializers
    assert (float(y.min()), float(y.max())) == pytest.approx(pair.ends) == ((-128 + 2) * 0.25, (127 + 2) * 0.25)


def test_no_zero_point_reads_as_onnx_defines_it_uint8():
    model = _pair_model(TensorProto.UINT8, 0.5, 0, opset=13, zero_point=False)
    pair = QdqIndex.of(model).pair(model.graph.node[0])
    y = _run(model)
    assert pair.qtype == "uint8" and pair.zero_from is None
    assert (float(y.min()), float(y.max())) == pytest.approx(pair.ends) == (0.0, 127.5)


def test_a_stored_weight_per_channel_and_an_unread_scale():
    w = numpy_helper.from_array(np.array([[1, -2], [3, 4], [-5, 6]], np.int8), "w")
    s = numpy_helper.from_array(np.array([0.5, 0.25, 2.0], np.float32), "ws")
    z = numpy_helper.from_array(np.zeros(3, np.int8), "wz")
    dq = helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], name="wdq", axis=0)
    computed = helper.make_node("DequantizeLinear", ["w", "t", "wz"], ["wg"], name="other")  # a scale no constant
    pair = own_pair(dq, {t.name: t for t in (w, s, z)})
    assert pair.tensor == "w" and pair.quantize is None and pair.axis == 0 and not pair.per_tensor
    assert pair.ends is None and pair.step is None and list(pair.hi) == [63.5, 31.75, 254.0]
    scale, zero = pair.broadcast(2)
    assert scale.shape == (3, 1) and np.allclose((numpy_helper.to_array(w) - zero) * scale,
                                                 [[0.5, -1], [0.75, 1], [-10, 12]])
    assert own_pair(computed, {t.name: t for t in (w, z)}) is None


def test_a_scale_shared_by_two_pairs():
    s = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", [x, "s", "z"], [f"{x}q"], name=f"q{x}") for x in ("a", "b")]
    nodes += [helper.make_node("DequantizeLinear", ["aq", "s", "z"], [f"ad{k}"], name=f"dq{k}") for k in (1, 2)]
    index = QdqIndex(nodes, {"s": s, "z": z})
    assert [q.name for q in index.quantizers("s")] == ["qa", "qb"]
    assert [d.name for d in index.pair("ad2").dequantize] == ["dq1", "dq2"]
    assert index.pair("b").dequantize == ()


def test_the_float_tensor_behind_a_pair(tmp_path):
    """`float_behind`: the tensor a pair's QuantizeLinear reads, asked of the tensor its DequantizeLinear writes — in
    a file ONNX Runtime's `quantize_static` writes: every activation's pair, and no weight's (a DequantizeLinear of a
    stored tensor has no float tensor behind it)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from cp_debug.graph.qdq_pair import float_behind
    from tests.bisect.test_saturated_reader import _gate

    assert QdqIndex.of(_pair_model(TensorProto.INT8, 0.5, 3)).float_behind("y") == "x"
    _gate(tmp_path / "m.onnx", "Sigmoid", 1.0)
    batches = iter([{"x": np.random.default_rng(0).uniform(-1, 1, (8, 16)).astype(np.float32)}])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    import onnx

    model = onnx.load(str(tmp_path / "q.onnx"))
    index = QdqIndex.of(model)
    behind = {n.output[0]: index.float_behind(n.output[0]) for n in model.graph.node if n.op_type == "DequantizeLinear"}
    inits = {i.name for i in model.graph.initializer}
    stored = {t for t, n in index.writer.items() if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    assert {t for t, b in behind.items() if b is None} == stored and len(stored) == 2  # the two MatMuls' weights
    # each activation's, the graph output's too (ORT renames the MatMul's: its pair writes `out`)
    assert sorted(b for b in behind.values() if b is not None) == ["gate", "out_QuantizeLinear_Input", "pre", "x"]
    assert float_behind(index.writer, "out") == "out_QuantizeLinear_Input"
    assert all(float_behind(index.writer, t) is None for t in ("x", "pre", "gate", "out_QuantizeLinear_Input"))


@pytest.mark.parametrize("qtype,name", [(TensorProto.FLOAT8E4M3FN, "float8e4m3fn"),
                                        (TensorProto.FLOAT8E5M2, "float8e5m2"), (TensorProto.INT16, "int16"),
                                        (TensorProto.INT4, "int4")])
def test_a_levels_width_is_what_onnx_runtime_rounds_to(qtype, name):
    """`QdqPair.spacing(at)`: the gap between the two values ONNX Runtime's pair gives around `at` — the scale for
    integer levels, a float8's spacing in the binade of `at` / scale (and at its smallest normal below)."""
    import onnxruntime as ort

    model = _pair_model(qtype, 0.5, 0)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "n"
    pair = QdqIndex.of(model).pair("y")
    assert pair.qtype == name
    fine = np.linspace(0, 3.5, 1_400_001, dtype=np.float32)  # every level up to 3.5 hit (levels ≥ 2^-10 apart)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    levels = np.unique(sess.run(None, {"x": fine})[0].astype(np.float64))
    for at in (0.01, 0.3, 1.0, 2.9):
        k = int(np.searchsorted(levels, at, side="right"))
        if k >= len(levels):
            continue
        assert levels[k] - levels[k - 1] == pytest.approx(pair.spacing(at), rel=1e-6), (name, at)
