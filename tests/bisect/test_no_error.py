"""Issue 115, items 2 and 7: "this difference is no error" (bisect/findings/no_error.py) on small
graphs made here — an overflow a saturated tanh absorbs is excused, one that reaches the outputs is not."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from cp_debug.bisect.findings.no_error import excused, saturates


def _graph(last: str) -> onnx.GraphProto:
    """y → y·y·y (cube) → Add(y) → `last` → out."""
    nodes = [helper.make_node("Mul", ["y", "y"], ["sq"], name="sq"), helper.make_node("Mul", ["sq", "y"], ["cube"],
             name="cube"), helper.make_node("Add", ["y", "cube"], ["inner"], name="inner"),
             helper.make_node(last, ["inner"], ["out"], name="last")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("y", "out")]
    return helper.make_graph(nodes, "g", [io[0]], [io[1]])


def _ref(y: np.ndarray) -> dict:
    sq = y * y
    cube = sq * y
    inner = y + cube
    return {"y": y, "sq": sq, "cube": cube, "inner": inner, "out": np.tanh(inner)}


def test_an_overflow_a_saturated_tanh_absorbs_is_no_error():
    ref = _ref(np.array([300.0, -300.0, 1.0, 0.5]))
    g = _graph("Tanh")
    assert saturates(g, "cube", ref) and saturates(g, "sq", ref)
    assert excused(g, "cube", ref) == "saturated"


def test_an_overflow_that_reaches_the_outputs_or_an_unsaturated_tanh_is_an_error():
    ref = _ref(np.array([300.0, -300.0, 1.0, 0.5]))
    assert not saturates(_graph("Relu"), "cube", ref)  # Relu passes the Inf on
    assert excused(_graph("Relu"), "cube", ref) is None
    assert not saturates(_graph("Tanh"), "out", ref)  # a graph output is read as it is


def test_a_mask_fill_is_excused_only_below_the_range():
    g = _graph("Relu")
    fill = {"cube": np.array([-1e9, 0.0, 1.0, 2.0])}
    assert excused(g, "cube", fill, frozenset({"cube"})) == "mask fill"
    assert excused(g, "cube", {"cube": np.array([1e9, 0.0, 1.0, 2.0])}, frozenset({"cube"})) is None
