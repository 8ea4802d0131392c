"""Small files made here for issue 115's refusals: an LSTM whose only quantizable op downstream is a Gemm."""

from __future__ import annotations

import numpy as np


def lstm_gemm_model(hidden: int = 16, frame: int = 32, classes: int = 4, seed: int = 0):
    """x [T, 1, frame] → LSTM → Y_h [1, 1, hidden] → Reshape [1, hidden] → Gemm [1, hidden] → MatMul [1, classes]
    → Softmax (outputs `probs` and the LSTM's cell state `Y_c`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=hidden, name="lstm"),
        helper.make_node("Reshape", ["Y_h", "flat"], ["h"], name="flatten"),
        helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["z"], transB=1, name="fc"),
        helper.make_node("MatMul", ["z", "out_w"], ["logits"], name="out"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="softmax"),
    ]
    inits = [numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, frame)) * 0.3).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, hidden)) * 0.3).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((1, 8 * hidden)) * 0.1).astype(np.float32), "B"),
             numpy_helper.from_array(np.array([1, hidden], np.int64), "flat"),
             numpy_helper.from_array((rng.standard_normal((hidden, hidden)) * 0.5).astype(np.float32), "fc_w"),
             numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32), "fc_b"),
             numpy_helper.from_array(rng.standard_normal((hidden, classes)).astype(np.float32), "out_w")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 1, frame])
    graph = helper.make_graph(nodes, "lstm_gemm", [x],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, classes]),
                               helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, 1, hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def lstm_feed(frame: int = 32, seed: int = 1) -> dict[str, np.ndarray]:
    t = np.arange(8 * frame) / 16000
    x = np.sin(2 * np.pi * 220 * t) + 0.1 * np.random.default_rng(seed).standard_normal(t.size)
    return {"x": x.reshape(8, 1, frame).astype(np.float32)}


def quantize_gemm_only(src, dst, feed: dict) -> None:
    """`src` through ONNX Runtime's quantize_static (Q/DQ, its defaults) with only the Gemm quantized, calibrated on
    `feed`: the LSTM and the MatMul stay float, as a user's file whose quantizer left them."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class _One(CalibrationDataReader):
        def __init__(self):
            self.it = iter([feed])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), _One(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Gemm"])


def quantize_row_by_row(src, dst, name: str, rows: np.ndarray) -> None:
    """`src` through ONNX Runtime's quantize_static (Q/DQ, its defaults), calibrated on `rows` one at a time as input
    `name`, as a user's `CalibrationDataReader` feeds a set of samples."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class _Rows(CalibrationDataReader):
        def __init__(self):
            self.it = iter({name: rows[i:i + 1]} for i in range(len(rows)))

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), _Rows(), quant_format=QuantFormat.QDQ)


def conv_model(seed: int = 0):
    """x [1, 3, 16, 16] → Conv 3→8 → Relu → Conv 8→4 → GlobalAveragePool: the smallest file whose Convs ORT's CPU
    wraps in Casts when run in float16."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["y"], name="pool")]
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "b2")]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def double_tail_model(seed: int = 0):
    """x [1, n, 16] → MatMul → Relu → MatMul → Cast(double) → Softmax → · bins (float64) → ReduceSum → Exp."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MatMul", ["b", "w2"], ["logits"], name="fc2"),
             helper.make_node("Cast", ["logits"], ["wide"], to=TensorProto.DOUBLE, name="to_double"),
             helper.make_node("Softmax", ["wide"], ["p"], axis=-1, name="softmax"),
             helper.make_node("Mul", ["p", "bins"], ["pb"], name="weigh"),
             helper.make_node("ReduceSum", ["pb", "axis"], ["log_f"], name="expect"),
             helper.make_node("Exp", ["log_f"], ["pitch"], name="hz")]
    inits = [numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((32, 24)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(np.linspace(np.log(46.875), np.log(2093.75), 24), "bins"),
             numpy_helper.from_array(np.array([-1], np.int64), "axis")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n", 16])
    pitch = helper.make_tensor_value_info("pitch", TensorProto.DOUBLE, [1, "n", 1])
    graph = helper.make_graph(nodes, "double_tail", [x], [pitch], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model
