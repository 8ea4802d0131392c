"""Issue 115: a crop-and-resize (nearest) whose box the network computes, as TensorFlow converters write it.

`write(path)` writes the ONNX file and its input (`.npz` beside it): a box head (ReduceMean, MatMul, bias, Sigmoid)
predicts (y1, x1, y2, x2); the roi [0, 0, y1, x1, 1, 1, y2, x2] crops the 16×16 image to 4×4 by a `Resize` in
`tf_crop_and_resize` mode, nearest (round_prefer_floor), and a MatMul reads the crop. The bias plants x1 so that the
first output column's source coordinate is 2.5003 — index 3 in FP32; float16 stores x1 one step lower (2.49939:
index 2), and the crop reads another column of the image.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write(path):
    """The model at `path` (its input at `path` with .npz)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 16, 16)).astype(np.float32)
    feat_w = (rng.standard_normal((16, 4)) * 0.1).astype(np.float32)
    pooled = x.reshape(16, 16).mean(0, keepdims=True)  # [1,16]
    z = pooled @ feat_w  # [1,4]
    # box (y1, x1, y2, x2) normalised; in = 16 -> coordinate = start*15 + k*(end-start)*15/3 for 4 outputs
    # plant x1 so that the source coordinate of output column 0 is 2.5 + 3e-4 (round_prefer_floor: 3 in fp32)
    want = np.array([[0.2, (2.5 + 3e-4) / 15, 0.8, 0.9]], np.float32)
    bias = (np.log(want / (1 - want)) - z).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["pooled4"], axes=[2], keepdims=0, name="pool"),
        helper.make_node("Reshape", ["pooled4", "shape16"], ["pooled"], name="flat"),
        helper.make_node("MatMul", ["pooled", "feat_w"], ["z"], name="box_proj"),
        helper.make_node("Add", ["z", "bias"], ["logits"], name="box_bias"),
        helper.make_node("Sigmoid", ["logits"], ["box"], name="box"),
        helper.make_node("Reshape", ["box", "shape4"], ["box4"], name="box_flat"),
        helper.make_node("Slice", ["box4", "s0", "s2"], ["yx1"], name="yx1"),
        helper.make_node("Slice", ["box4", "s2", "s4"], ["yx2"], name="yx2"),
        helper.make_node("Concat", ["zeros2", "yx1", "ones2", "yx2"], ["roi"], axis=0, name="roi"),
        helper.make_node("Resize", ["x", "roi", "", "sizes"], ["crop"], mode="nearest",
                         coordinate_transformation_mode="tf_crop_and_resize", name="crop"),
        helper.make_node("Flatten", ["crop"], ["cropf"], name="crop_flat"),
        helper.make_node("MatMul", ["cropf", "head_w"], ["out"], name="head"),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("feat_w", feat_w), ("bias", bias[0]), ("shape16", np.array([1, 16], np.int64)),
        ("shape4", np.array([4], np.int64)), ("s0", np.array([0], np.int64)), ("s2", np.array([2], np.int64)),
        ("s4", np.array([4], np.int64)), ("zeros2", np.zeros(2, np.float32)), ("ones2", np.ones(2, np.float32)),
        ("sizes", np.array([1, 1, 4, 4], np.int64)),
        ("head_w", (rng.standard_normal((16, 3))).astype(np.float32))]]
    g = helper.make_graph(nodes, "crop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    np.savez(str(path).replace(".onnx", ".npz"), x=x)

