"""A reader left out of a user's Q/DQ file as the file's own quantizer leaves it (`qdq_removal.output_paired`, issue
115: the exclusion as the file's producer makes it).

ONNX Runtime's QDQ quantizer quantizes a Conv's, Gemm's and MatMul's output with the op (`QDQConv` / `QDQGemm` /
`QDQMatMul` call `quantize_activation_tensor(node.output[0])`), so `quantize_static(nodes_to_exclude=[reader])` keeps
the pair its writer put on the reader's input. The surgery (`without_qdq`) removed it: on a Conv → Conv → Conv graph
whose first conv writes two outlier channels (BlazeFace's `depthwise_conv2d_15` → `conv2d_16`, by hand), leaving the
middle conv out gave back in the surgery what the quantizer's own file does not. Now the surgery is the quantizer's
file (the same Q/DQ, the same outputs), for a file ONNX Runtime stamps and one that names no tool (the rule assumed,
said); ModelOpt's files pair no output (tests/fix/test_tool_file_path.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _convs() -> onnx.ModelProto:
    """x → c1 (two output channels 300× the others) → c2 → c3 → y."""
    rng = np.random.default_rng(0)
    w1 = 0.3 * rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w1[[2, 5]] *= 300.0  # two outlier channels set c1's per-tensor output range
    ws = [w1, 0.2 * rng.standard_normal((8, 8, 3, 3)).astype(np.float32),
          0.2 * rng.standard_normal((4, 8, 3, 3)).astype(np.float32)]
    nodes = [helper.make_node("Conv", [x, f"w{k}"], [y], name=f"c{k}", pads=[1, 1, 1, 1])
             for k, (x, y) in enumerate([("x", "a"), ("a", "b"), ("b", "y")], start=1)]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(w, f"w{k}") for k, w in enumerate(ws, start=1)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _matmuls() -> onnx.ModelProto:
    """x → m1 (MatMul, two outlier columns) → g2 (Gemm) → m3 (MatMul) → y."""
    rng = np.random.default_rng(1)
    w1 = 0.3 * rng.standard_normal((16, 12)).astype(np.float32)
    w1[:, [3, 7]] *= 300.0
    ws = {"w1": w1, "w2": 0.2 * rng.standard_normal((12, 12)).astype(np.float32),
          "w3": 0.2 * rng.standard_normal((12, 6)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="m1"),
             helper.make_node("Gemm", ["a", "w2"], ["b"], name="g2"),
             helper.make_node("MatMul", ["b", "w3"], ["y"], name="m3")]
    graph = helper.make_graph(nodes, "matmuls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
                              [numpy_helper.from_array(w, k) for k, w in ws.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _quantized(tmp_path, model, frames, exclude=()) -> onnx.ModelProto:
    """`model` through onnxruntime's `quantize_static` (Q/DQ, its defaults), calibrated on `frames`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(frames)

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp_path / "fp32.onnx", tmp_path / f"int8_{'_'.join(exclude)}.onnx"
    onnx.save(model, src)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(exclude))
    return onnx.load(dst)


def _run(model, feed) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _pairs(model) -> int:
    return sum(n.op_type == "QuantizeLinear" for n in model.graph.node)


@pytest.mark.parametrize(("make", "shape", "reader"), [(_convs, (1, 3, 8, 8), "c2"), (_matmuls, (4, 16), "g2"),
                                                       (_matmuls, (4, 16), "m3")])
@pytest.mark.parametrize("stamped", [True, False])
def test_a_reader_left_out_keeps_reading_its_writers_output_pair_as_onnx_runtimes_quantizer_leaves_it(
        tmp_path, make, shape, reader, stamped):
    from cp_debug.bisect.cures.qdq_exclude import ONNXRUNTIME, ExcludeCure, producer
    from cp_debug.bisect.cures.qdq_removal import without_qdq

    model = make()
    rng = np.random.default_rng(2)
    frames = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)]
    file = _quantized(tmp_path, model, frames)
    if not stamped:  # a file that does not say which tool wrote it: ONNX Runtime's rule assumed, and said
        del file.metadata_props[:]
    assert producer(file) == (ONNXRUNTIME if stamped else None)
    own = _quantized(tmp_path, model, frames, exclude=(reader,))  # the quantizer's own exclusion, by hand
    surgery = without_qdq(file, [reader], model)
    # the reader's input pair stays (its writer's), the weight's goes: the quantizer's file, pair for pair
    assert _pairs(surgery) == _pairs(own), (_pairs(surgery), _pairs(own), _pairs(file))
    for feed in frames[:2]:
        want = _run(own, feed)
        assert np.abs(_run(surgery, feed) - want).max() <= 1e-4 * np.abs(want).max()
    if not stamped:
        assert "tried by ONNX Runtime's rule" in ExcludeCure((reader,), producer(file)).text()
