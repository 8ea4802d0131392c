"""Issue 115, item 2: a log-power whose eps (1e-10) and small powers flush to zero in float16 *before* the Log.

`power = x² · 1e-6` (a fifth of it below float16's smallest subnormal, 5.96e-8), `Log(power + 1e-10)`: the Log makes
-Inf in FP16 where FP32 is finite. `write(folder)` writes the ONNX file and its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write(folder: Path) -> tuple[Path, Path]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(1e-6, np.float32), "gain"),
             numpy_helper.from_array(np.array(1e-10, np.float32), "eps"),
             numpy_helper.from_array(np.array(0.1, np.float32), "out_gain")]
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="square"),
             helper.make_node("Mul", ["sq", "gain"], ["power"], name="power"),
             helper.make_node("Add", ["power", "eps"], ["guarded"], name="add_eps"),
             helper.make_node("Log", ["guarded"], ["logp"], name="log"),
             helper.make_node("Mul", ["logp", "out_gain"], ["y"], name="scale")]
    graph = helper.make_graph(nodes, "flush", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "flush.onnx")
    np.savez(folder / "x.npz", x=np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32))
    return folder / "flush.onnx", folder / "x.npz"
