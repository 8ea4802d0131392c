"""Issue 115, item 2: an ONNX file (as converters from TensorFlow / Paddle write them: the BatchNormalization kept)
whose BatchNorm's running variance, 9.79e7 as a trained text detector's, is beyond float16's range: Inf in FP16, its
channel normalised to 0 — a statistic out of range, not FP16 rounding. `write(path)` writes it with its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write(folder: Path) -> tuple[Path, Path]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    var = np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5
    var[2] = 9.79e7
    scale = np.ones(8, np.float32)
    scale[2] = 3000.0  # the channel's output back at the others' size in FP32
    inits = {"w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
             "b1": np.zeros(8, np.float32), "scale": scale, "bias": np.zeros(8, np.float32),
             "mean": np.zeros(8, np.float32), "var": var,
             "w2": rng.standard_normal((4, 8, 1, 1)).astype(np.float32) * 0.3, "b2": np.zeros(4, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "scale", "bias", "mean", "var"], ["bn"], name="bn1"),
             helper.make_node("Relu", ["bn"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "statistics", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                              [1, 3, 16, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "bn.onnx")
    np.savez(folder / "x.npz", x=rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    return folder / "bn.onnx", folder / "x.npz"
