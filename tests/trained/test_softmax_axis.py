"""A Softmax's decision is read along the Softmax's own axis (issue 115, item 3): MTCNN's proposal net (facenet-pytorch)
writes face / no face per 12-px cell as a Softmax over axis 1 of [1, 2, H, W]; read at the last axis' argmax, its
healthy FP16 had "11 of 82 decide otherwise" (the argmax over a row of cells, ties 4e-6 apart) in `decisions`."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from onnx import TensorProto, helper


def _stage(axis: int | None, opset: int = 17):
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="sm", **attrs),
             helper.make_node("Identity", ["s"], ["prob"], name="id")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 3, 4]) for n in ("x", "prob")]
    model = helper.make_model(helper.make_graph(nodes, "g", vi[:1], vi[1:]),
                              opset_imports=[helper.make_opsetid("", opset)])
    return SimpleNamespace(onnx_model=model, output_names=["prob"])


def test_a_softmax_over_the_class_axis_is_read_there():
    from cp_debug.bisect.findings.decisions import decided_outputs, read_decisions

    assert decided_outputs(_stage(1)) == {"prob": "Softmax@1"}
    assert decided_outputs(_stage(None)) == {"prob": "Softmax"}  # opset 13 on: the last axis
    assert decided_outputs(_stage(None, opset=11)) == {"prob": "Softmax@1"}  # before 13: axis 1
    rng = np.random.default_rng(0)
    face = rng.uniform(0.0, 1.0, (1, 1, 3, 4))
    ref = np.concatenate([1 - face, face], axis=1)
    out = ref + rng.uniform(-1e-4, 1e-4, ref.shape) * (np.abs(face - 0.5) > 0.01)  # no cell crosses 0.5
    out[0, :, 0, 0] = [0.49, 0.51] if ref[0, 1, 0, 0] < 0.5 else [0.51, 0.49]  # one cell does
    (d,) = read_decisions({"prob": "Softmax@1"}, {"prob": ref}, {"prob": out})
    assert d.rule == "argmax" and d.flipped == 1 and d.total == 12, d
    (last,) = read_decisions({"prob": "Softmax"}, {"prob": ref}, {"prob": out})
    assert last.total == 6  # read along the last axis: rows of 4 cells, not the cells' classes
