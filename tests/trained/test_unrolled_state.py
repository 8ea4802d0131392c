"""A recurrence written out as ops, in a user's FP16 / INT8 file: every probe mapped (issue 115, probes missing;
probes/same_names.py).

g2p_en 2.1.0's decoder (a GRU cell, its weights in the wheel's checkpoint20.npz) unrolled over 20 greedy steps as
users export it (`torch.onnx.export`, TorchScript): the state `h = (1 − z)·n + z·h` runs back through `Sub` / `Mul` /
`Add` only, never a weighted node, so the structural chain from step 8 on was past its 24 ops: 37 of 426 probes "not
found in the deployed graph" in onnxconverter-common's file and in `quantize_static`'s alike, though both keep every
tensor's name. Built small here: the same cell over 12 steps, one shared Gemm a step."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trained.test_madmom_forms import user_file_rows

STEPS = 12


def _unrolled():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 0.4, (8, 16)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b"),
            numpy_helper.from_array(np.array([8, 8], np.int64), "halves")]
    nodes, h = [], "x"
    for t in range(STEPS):
        def node(op, inputs, **attrs):
            outs = [f"/dec_{t}/{op}_{len(nodes)}_output_{k}" for k in range(2 if op == "Split" else 1)]
            nodes.append(helper.make_node(op, inputs, outs, name=f"/dec_{t}/{op}_{len(nodes)}", **attrs))
            return outs if op == "Split" else outs[0]

        zs, ns = node("Split", [node("Gemm", [h, "w", "b"]), "halves"], axis=1)
        z, n = node("Sigmoid", [zs]), node("Tanh", [ns])
        h = node("Add", [node("Mul", [node("Sub", [h, n]), z]), n])  # (h − n)·z + n = (1 − z)·n + z·h
    nodes[-1].output[0] = "h"
    graph = helper.make_graph(nodes, "unrolled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [4, 8])], init)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_every_step_of_an_unrolled_state_is_mapped(tmp_path, kind):
    feeds = [{"x": np.random.default_rng(s).normal(0, 1, (4, 8)).astype(np.float32)} for s in range(3)]
    rows = user_file_rows(tmp_path, _unrolled(), feeds, kind, codes=(0, 4))
    assert len(rows) >= 7 * STEPS
    assert not [r["probe"] for r in rows if r["status"] == "missing"]  # the last steps' Sub / Mul / Add among them
