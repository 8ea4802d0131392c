"""A small ONNX graph written here, shaped as pythainlp's deepcut (docs/trained-models.md, tenth stop): a Concat of
narrow features (|x| ≤ 4: its embeddings) and wide ones (0–1600: its convolutions' maxima), read by a BatchNorm
written as ops (`Mul`, `Add`), then a MatMul and a Sigmoid read at 0.5. ONNX Runtime's `quantize_static` quantizes
the Concat's output at one per-tensor scale (a step of ~6): every narrow feature rounds to a level or two, and
decisions flip. The Mul quantizes what it reads, so `nodes_to_exclude=[the Concat]` alone leaves that pair."""

from __future__ import annotations

import numpy as np

CONCAT, MUL = "concat", "bn_mul"


def build():
    """The FP32 graph (input `x`: (N, 5, 4), five positions of four features; output `p`: (N, 1), a Sigmoid)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(115)
    w_narrow = rng.normal(0, 0.7, (4, 8)).astype(np.float32)
    w_wide = rng.normal(0, 1, (4, 2)).astype(np.float32)
    scale = np.array([1.0] * 8 + [0.001] * 2, np.float32)
    w_out = np.concatenate([np.r_[rng.normal(0, 0.5, 8), 0.02, -0.02] for _ in range(5)]).astype(np.float32)[:, None]
    beta = rng.normal(0, 0.1, 10).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w_narrow, "w_narrow"), (w_wide, "w_wide"),
                                                         (np.float32(400.0), "gain"), (scale, "bn_gamma"),
                                                         (beta, "bn_beta"), (w_out, "w_out"),
                                                         (np.zeros(1, np.float32), "b_out"),
                                                         (np.array([-1, 50], np.int64), "flat"))]
    nodes = [helper.make_node("MatMul", ["x", "w_narrow"], ["narrow"], name="narrow_mm"),
             helper.make_node("MatMul", ["x", "w_wide"], ["wide_mm"], name="wide_mm"),
             helper.make_node("Relu", ["wide_mm"], ["wide_relu"], name="wide_relu"),
             helper.make_node("Mul", ["wide_relu", "gain"], ["wide"], name="wide_gain"),
             helper.make_node("Concat", ["narrow", "wide"], ["features"], name=CONCAT, axis=2),
             helper.make_node("Mul", ["features", "bn_gamma"], ["bn_scaled"], name=MUL),
             helper.make_node("Add", ["bn_scaled", "bn_beta"], ["bn"], name="bn_add"),
             helper.make_node("Reshape", ["bn", "flat"], ["flat_bn"], name="flatten"),
             helper.make_node("MatMul", ["flat_bn", "w_out"], ["logit_mm"], name="out_mm"),
             helper.make_node("Add", ["logit_mm", "b_out"], ["logit"], name="out_add"),
             helper.make_node("Sigmoid", ["logit"], ["p"], name="out_sigmoid")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, 4])
    graph = helper.make_graph(nodes, "concat_reader", [x], [helper.make_tensor_value_info("p", TensorProto.FLOAT,
                                                                                           ["n", 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def samples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 5, 4)).astype(np.float32)
