"""A small file shaped as silero-vad ships: an `If` on a scalar input (its sample rate) whose two branches each hold
an LSTM on frames cut from the audio, the branch not taken unable to infer at the taken one's sizes."""

from __future__ import annotations

import numpy as np


def if_lstm_model(hidden: int = 8, seed: int = 0):
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)

    def branch(tag: str, frame: int):
        # x [1, N] → frames [T, 1, frame] (T = N // frame) → LSTM → Y_h [1, 1, hidden] → Sigmoid(Y_h · w)
        nodes = [
            helper.make_node("Reshape", ["x", f"{tag}_shape"], [f"{tag}_frames"], name=f"{tag}_reshape"),
            helper.make_node("LSTM", [f"{tag}_frames", f"{tag}_W", f"{tag}_R", f"{tag}_B"],
                             [f"{tag}_Y", f"{tag}_Yh"], hidden_size=hidden, name=f"{tag}_lstm"),
            helper.make_node("Squeeze", [f"{tag}_Yh"], [f"{tag}_h"], name=f"{tag}_squeeze"),
            helper.make_node("MatMul", [f"{tag}_h", f"{tag}_w"], [f"{tag}_logit"], name=f"{tag}_head"),
            helper.make_node("Sigmoid", [f"{tag}_logit"], [f"{tag}_prob"], name=f"{tag}_sigmoid"),
        ]
        inits = [
            helper.make_tensor(f"{tag}_shape", TensorProto.INT64, [3], [-1, 1, frame]),
            onnx.numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, frame)) * 0.3).astype(np.float32),
                                         f"{tag}_W"),
            onnx.numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, hidden)) * 0.3).astype(np.float32),
                                         f"{tag}_R"),
            onnx.numpy_helper.from_array(np.zeros((1, 8 * hidden), np.float32), f"{tag}_B"),
            onnx.numpy_helper.from_array(rng.standard_normal((hidden, 1)).astype(np.float32), f"{tag}_w"),
        ]
        out = helper.make_tensor_value_info(f"{tag}_prob", TensorProto.FLOAT, [None])
        return helper.make_graph(nodes, f"{tag}_branch", [], [out], inits)

    nodes = [helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="is16k"),
             helper.make_node("If", ["is16k"], ["prob"], name="If_0",
                              then_branch=branch("k16", 64), else_branch=branch("k8", 48))]
    graph = helper.make_graph(
        nodes, "branchy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [None])],
        [helper.make_tensor("sr16k", TensorProto.INT64, [], [16000])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def feed(n: int = 64 * 8, seed: int = 1) -> dict[str, np.ndarray]:
    t = np.arange(n) / 16000
    x = np.sin(2 * np.pi * 180 * t) + 0.05 * np.random.default_rng(seed).standard_normal(n)
    return {"x": x[None].astype(np.float32), "sr": np.array(16000, np.int64)}
