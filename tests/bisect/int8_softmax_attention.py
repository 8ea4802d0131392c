"""A small attention written here whose Softmax over 256 keys is peaked (scaled logits): most of its probabilities
lie near 0, the largest near 1. ONNX Runtime's INT8 quantizes the MatMul that reads those probabilities at a range
±1 their largest sets — the Softmax's own [0, 1] —, and most of them lie below half a step (1/254): they round to
zero. No outlier sets that range; the op bounds it."""

from __future__ import annotations

import numpy as np

T, D = 256, 32


def build(scale: float = 6.0):
    """The FP32 graph (input `x`: (1, T, D); output `y`: (1, T, D))."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    wq, wk, wv = (rng.normal(0, 1 / np.sqrt(D), (D, D)).astype(np.float32) for _ in range(3))
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
             helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
             helper.make_node("MatMul", ["x", "wv"], ["v0"], name="v_proj"),
             helper.make_node("Add", ["v0", "offset"], ["v"], name="v_offset"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("Mul", ["s", "scale"], ["logits"], name="scaled"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["probs", "v"], ["y"], name="attend")]
    inits = [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(wk, "wk"), numpy_helper.from_array(wv, "wv"),
             numpy_helper.from_array(np.array(scale / np.sqrt(D), np.float32), "scale"),
             numpy_helper.from_array(np.full(D, 8.0, np.float32), "offset")]
    graph = helper.make_graph(nodes, "peaked_attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                           [1, T, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, D])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def sample(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (1, T, D)).astype(np.float32)


KEYS, ROWS, DIM = 2048, 64, 16


def sink():
    """`--torch` FUNC: an attention sink (the first key drawing much of every row's weight, as LLMs' first token
    does): `scores` adds 8 to key 0's logits and takes their Softmax; `attend` averages the values with them. Key 0
    takes ~0.4 of each row, the others ~1.4e-4 each, below half an INT8 step of the range the sink sets (0.4 / 254):
    INT8 rounds them all to zero at `attend`'s input, and ~0.6 of the weight with them."""
    import torch
    from torch import nn

    class Scores(nn.Module):
        def __init__(self):
            super().__init__()
            bias = torch.zeros(KEYS)
            bias[0] = 8.0
            self.register_buffer("sink", bias)

        def forward(self, x):
            return torch.softmax(x + self.sink, dim=-1)

    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(5)
            self.values = nn.Parameter(1.0 + torch.randn(KEYS, DIM, generator=g))

        def forward(self, probs):
            return probs @ self.values

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scores, self.attend = Scores(), Attend()

        def forward(self, x):
            return self.attend(self.scores(x))

    return Net().eval(), (torch.from_numpy(sink_logits(1)),)


def sink_logits(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.5, (1, ROWS, KEYS)).astype(np.float32)
