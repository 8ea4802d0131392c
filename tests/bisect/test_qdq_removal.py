"""A user's Q/DQ file with nodes left out of its quantization (`cures/qdq_removal.without_qdq`, what the file's
`nodes_to_exclude` does: the intervention's restoration of a user's file, the exclusion cure's trial) where ONNX
Runtime's quantizer folded a Clip into its uint8 pair: paddle2onnx writes a hard-swish as `x · Clip(x + 3, 0, 6) / 6`
with the Clip's bounds as Constant nodes, and `quantize_static` (its defaults) drops the Clip, its range held by the
pair. Left out of the quantization, the node must read the tensor through the Clip again: before, the bounds (no
initializers) were not found, a Relu stood in for the Clip and the values above 6 passed (PP-OCRv4's recogniser with
every node left out: 21 of 40 CTC steps flipped against its FP32 file; after, none)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _hard_swish_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")

    def const(name: str, v: float):
        return helper.make_node("Constant", [], [name], name=f"{name}_node",
                                value=numpy_helper.from_array(np.array(v, np.float32), name))

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             const("three", 3.0), const("lo", 0.0), const("hi", 6.0), const("six", 6.0),
             helper.make_node("Add", ["c", "three"], ["a"], name="add"),
             helper.make_node("Clip", ["a", "lo", "hi"], ["clipped"], name="clip"),
             helper.make_node("Mul", ["c", "clipped"], ["m"], name="mul"),
             helper.make_node("Div", ["m", "six"], ["y"], name="div")]
    graph = helper.make_graph(nodes, "hard_swish",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _quantized(tmp_path, model: onnx.ModelProto, frames: list[dict], name: str = "int8.onnx",
               exclude: list[str] | None = None) -> onnx.ModelProto:
    """`model` through onnxruntime's `quantize_static` (Q/DQ, its defaults, `exclude` as its nodes_to_exclude),
    calibrated on `frames`, written to tmp_path / name (the FP32 model to fp32.onnx)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(frames)

        def get_next(self):
            return next(self.it, None)

    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_static(str(tmp_path / "fp32.onnx"), str(tmp_path / name), Reader(), quant_format=QuantFormat.QDQ,
                    nodes_to_exclude=exclude or [])
    return onnx.load(tmp_path / name)


def test_a_clip_the_quantizer_folded_is_read_through_again(tmp_path):
    import onnxruntime as ort

    from cp_debug.bisect.cures.qdq_removal import without_qdq

    model = _hard_swish_model()
    rng = np.random.default_rng(1)
    frames = [{"x": 2 * rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    file = _quantized(tmp_path, model, frames)
    assert "Clip" not in {n.op_type for n in file.graph.node}  # folded into the uint8 pair's range

    def run(m) -> np.ndarray:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, frames[0])[0]

    ref = run(model)
    assert ref.max() > 3  # some c + 3 > 6: values the Clip bounds
    every = [n.name for n in file.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant")]
    got = run(without_qdq(file, every, model))
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max(), np.abs(got - ref).max()


def test_a_folded_activation_read_by_two_nodes_left_out_is_unfolded_once(tmp_path):
    """A Relu the quantizer folded into the pair before two readers (YOLOv8's anchor `Add`s, each read by a `Sub` and
    an `Add` of its box decoding, in nudenet's `quantize_static` file): both left out read one Relu again. Before,
    each reader made its own node of the same name: the graph was not valid ("Nodes in a graph must be topologically
    sorted"), and every intervention that left both out (a set, a half of the graph) was not run. (Since the
    eleventh stop the readers alone keep the pair their kept Conv writes, as the quantizer does: the Relu is read
    again where the Conv is left out too.)"""
    import onnxruntime as ort

    from cp_debug.bisect.cures.qdq_removal import without_qdq

    rng = np.random.default_rng(0)
    ws = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
          for n, s in (("w0", (4, 3, 3, 3)), ("wa", (4, 4, 3, 3)), ("wb", (4, 4, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["r", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(
        nodes, "two_readers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], ws),
        opset_imports=[helper.make_opsetid("", 17)])
    frames = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    file = _quantized(tmp_path, model, frames)
    assert "Relu" not in {n.op_type for n in file.graph.node}  # folded into the uint8 pair's range

    # the readers alone left out keep reading the pair their writer kept in INT8 writes (ONNX Runtime's quantizer
    # quantizes a Conv's output with it: `qdq_removal.output_paired`; by hand, its own file holds no Relu either)
    readers = without_qdq(file, ["conv_a", "conv_b"], model)
    assert sum(n.op_type == "Relu" for n in readers.graph.node) == 0
    out = without_qdq(file, ["conv", "conv_a", "conv_b"], model)  # the writer too: the Relu read again, once
    onnx.checker.check_model(out, full_check=True)
    assert sum(n.op_type == "Relu" for n in out.graph.node) == 1
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got, ref = sess.run(None, frames[0])[0], fp32.run(None, frames[0])[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()  # the Add's inputs still INT8


def _gemm_lstm_model() -> onnx.ModelProto:
    """BeatNet's front (its BDA network as exported): a Gemm per frame, a Reshape to (1, frames, 6) and a Transpose
    to the sequence-first layout, read by an LSTM that ONNX Runtime's quantizer leaves float."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w", rng.standard_normal((6, 5))), ("b", rng.standard_normal(6)),
        ("W", 0.5 * rng.standard_normal((1, 16, 6))), ("R", 0.5 * rng.standard_normal((1, 16, 4))),
        ("B", 0.1 * rng.standard_normal((1, 32))))] + [numpy_helper.from_array(np.array([1, -1, 6]), "shape")]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="gemm", transB=1),
             helper.make_node("Reshape", ["g", "shape"], ["r"], name="reshape"),
             helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[1, 0, 2]),
             helper.make_node("LSTM", ["t", "W", "R", "B"], ["y"], name="lstm", hidden_size=4)]
    return helper.make_model(helper.make_graph(
        nodes, "gemm_lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [12, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [12, 1, 1, 4])], inits),
        opset_imports=[helper.make_opsetid("", 17)])


def test_a_node_left_out_leaves_its_output_float_as_the_quantizer_does(tmp_path):
    """Left out of a user's Q/DQ file, a node's output pair and the pairs after the ops that pass it on at its scale
    (a Reshape, a Transpose) are removed where what reads them quantizes nothing (an LSTM), as `quantize_static`'s
    `nodes_to_exclude` leaves them float. Before, the three pairs stayed: BeatNet's input Gemm left out of the user's
    file did not bring a beat back that the same file re-quantized without it does (one story per quantization)."""
    import onnxruntime as ort

    from cp_debug.bisect.cures.qdq_removal import without_qdq

    model = _gemm_lstm_model()
    rng = np.random.default_rng(1)
    frames = [{"x": (3 * rng.standard_normal((12, 5))).astype(np.float32)} for _ in range(4)]
    file = _quantized(tmp_path, model, frames)
    assert sum(n.op_type == "QuantizeLinear" for n in file.graph.node) == 4  # x, g, r, t
    _quantized(tmp_path, model, frames, "excluded.onnx", ["gemm"])

    def run(m) -> np.ndarray:
        m = m if isinstance(m, onnx.ModelProto) else onnx.load(m)
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, frames[0])[0]

    out = without_qdq(file, ["gemm"], model)
    onnx.checker.check_model(out, full_check=True)
    assert sum(n.op_type == "QuantizeLinear" for n in out.graph.node) == 0  # x's pair fed the Gemm only
    assert np.abs(run(out) - run(tmp_path / "excluded.onnx")).max() < 1e-5
    assert np.abs(run(file) - run(out)).max() > 1e-3  # the pairs the quantizer leaves float do move the output


def test_a_node_left_out_keeps_the_pair_a_quantized_reader_reads(tmp_path):
    """The output pair of a node left out stays where its reader is quantized (a Conv after a Conv): the quantizer
    quantizes that tensor for its reader, whether or not its writer is."""
    from cp_debug.bisect.cures.qdq_removal import without_qdq

    rng = np.random.default_rng(0)
    ws = [numpy_helper.from_array(rng.standard_normal((4, c, 3, 3)).astype(np.float32), n) for n, c in (("w0", 3),
                                                                                                       ("w1", 4))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
             helper.make_node("Conv", ["r", "w1"], ["y"], name="conv1", pads=[1, 1, 1, 1])]
    model = helper.make_model(helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [*ws, numpy_helper.from_array(np.array([1, 4, 8, 8]), "shape")]), opset_imports=[helper.make_opsetid("", 17)])
    file = _quantized(tmp_path, model, [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}])
    before = sum(n.op_type == "QuantizeLinear" for n in file.graph.node)
    out = without_qdq(file, ["conv0"], model)
    assert sum(n.op_type == "QuantizeLinear" for n in out.graph.node) == before - 1  # only x's pair, fed conv0 alone


def test_a_tensor_the_reference_writes_without_a_relu_is_read_as_it_is():
    """pipecat's smart-turn v3.2 (its author's uint8 Q/DQ file, tried as a new user): a GELU's output (|x| up to
    ~100, its negatives ≥ -0.17) quantized with its zero point at the lowest level (a range so wide that 0 rounds
    to it) read through a Relu when its readers were left out (the fallback for a folded activation), which zeroed
    its negatives and moved 3 of 12 turn calls with every node out of INT8; the reference writes that tensor by that
    name with a Mul, so no Relu was folded there. Every node left out now reads it as it is (the graph output's own
    pair left)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from cp_debug.bisect.cures.qdq_removal import without_qdq

    rng = np.random.default_rng(3)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 32)) * 4).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2")
    k = numpy_helper.from_array(np.array(1.702, np.float32), "k")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Mul", ["h", "k"], ["hk"], name="scale"),
             helper.make_node("Sigmoid", ["hk"], ["s"], name="sig"),
             helper.make_node("Mul", ["h", "s"], ["gelu"], name="gelu"),  # x·σ(1.702x): negatives down to -0.17
             helper.make_node("MatMul", ["gelu", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 4])], [w1, w2, k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = (rng.standard_normal((64, 8)) * 3).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": x}])

        def get_next(self):
            return next(self._it, None)

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, Path(tmp) / "m.onnx")
        quantize_static(str(Path(tmp) / "m.onnx"), str(Path(tmp) / "q.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=False)
        file = onnx.load(Path(tmp) / "q.onnx")
    zero = {i.name: numpy_helper.to_array(i) for i in file.graph.initializer}
    q = next(n for n in file.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "gelu")
    assert int(zero[q.input[2]]) == np.iinfo(zero[q.input[2]].dtype).min  # the pair clips at 0 (its lowest level)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    ref = run(model)
    edited = without_qdq(file, [n.name for n in model.graph.node], model)
    assert not [n.name for n in edited.graph.node if n.op_type == "Relu"]  # before: 'gelu_unfolded_Relu'
    # left: the graph output's own pair (a pair on a graph output stays): within a step of it
    step = float(zero[next(n for n in file.graph.node if n.op_type == "QuantizeLinear" and n.input[0].startswith("y"))
                      .input[1]])
    assert float(np.abs(run(edited) - ref).max()) <= step, (float(np.abs(run(edited) - ref).max()), step)


def test_a_node_left_out_leaves_a_graph_output_past_a_squeeze_float_as_the_quantizer_does(tmp_path):
    """natasha's syntax parser (docs/trained-models.md, fourteenth stop): its relation scores' last MatMul writes the
    graph output through a Squeeze; `quantize_static(nodes_to_exclude=[that MatMul])` quantizes neither the MatMul's
    output nor the Squeeze's. Before, the pair writing a graph output stopped the removal: both pairs stayed (step
    4.77 on scores up to 1148), the cure "tried and not enough" where the quantizer's own exclusion holds."""
    import onnxruntime as ort

    from cp_debug.bisect.cures.qdq_removal import without_qdq

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32) * 40, "w")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w"], ["m"], name="matmul"),
             helper.make_node("Squeeze", ["m", "axes"], ["y"], name="squeeze")]
    graph = helper.make_graph(nodes, "scores", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 16])], [w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    frames = [{"x": rng.standard_normal((1, 5, 8)).astype(np.float32)} for _ in range(4)]
    file = _quantized(tmp_path, model, frames)
    assert "y" in {n.output[0] for n in file.graph.node if n.op_type == "DequantizeLinear"}  # the output's pair
    onnx.save(without_qdq(file, ["matmul"], model), tmp_path / "left_out.onnx")
    _quantized(tmp_path, model, frames, "excluded.onnx", ["matmul"])
    ours, theirs = (ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"])
                    for f in ("left_out.onnx", "excluded.onnx"))
    x = {"x": rng.standard_normal((1, 5, 8)).astype(np.float32)}
    got, want = ours.run(["y"], x)[0], theirs.run(["y"], x)[0]
    float_y = x["x"].clip(0)[0] @ numpy_helper.to_array(w)
    assert np.abs(want - float_y).max() < 1e-3 * np.abs(float_y).max()  # the quantizer's exclusion: y float
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())
