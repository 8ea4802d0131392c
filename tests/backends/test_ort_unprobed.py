"""Whether exposing probes changed what ONNX Runtime runs (`backends/ort/ort_unprobed.py`, issue 118): the probed
session's optimised graph against the graph without its probe outputs, read from real ORT sessions. A tensor ORT
fuses away (a Conv's output before its ReLU, a LayerNorm's inner difference) changes the kernels when exposed; a
tensor every optimisation keeps (the ReLU's output a Conv reads) changes none, and the probed run's outputs are then
the graph as deployed's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec


def _conv_relu_conv():
    """x → Conv → c → Relu → r → Conv → y (CPU: the first Conv and the ReLU fuse into one FusedConv)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["y"])], "crc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [w1, w2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _layer_norm():
    """A LayerNorm written out op by op (ORT fuses it into one LayerNormalization; `d` lies inside the pattern)."""
    eps = numpy_helper.from_array(np.array(1e-5, np.float32), "eps")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    gamma = numpy_helper.from_array(np.linspace(0.5, 1.5, 64, dtype=np.float32), "gamma")
    beta = numpy_helper.from_array(np.linspace(-0.1, 0.1, 64, dtype=np.float32), "beta")
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]), helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["p"]), helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
             helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n"]), helper.make_node("Mul", ["n", "gamma"], ["g"]),
             helper.make_node("Add", ["g", "beta"], ["ln"]), helper.make_node("Relu", ["ln"], ["y"])]
    g = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16, 64])], [eps, two, gamma, beta])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _plain(model, x):
    with OrtRunner(model, BackendSpec.parse("ort")) as r:
        return r.infer({"x": x})["y"]


@pytest.mark.parametrize("spec", ["ort", "ort-cpu-fp16"])
def test_a_tensor_no_optimisation_removes_leaves_the_kernels_and_the_outputs(spec):
    model, x = _conv_relu_conv(), np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    with OrtRunner(model, BackendSpec.parse(spec), extra_outputs=["r"]) as r:
        assert r.probes_left_kernels() is True
        probed = r.infer({"x": x})["y"]
    if spec == "ort":  # the graph as deployed, run: the same numbers, bit for bit
        np.testing.assert_array_equal(probed, _plain(model, x))


def test_a_tensor_a_fusion_removes_changes_the_kernels():
    with OrtRunner(_conv_relu_conv(), BackendSpec.parse("ort"), extra_outputs=["c"]) as r:
        assert r.probes_left_kernels() is False  # the Conv and its ReLU run apart: c must stay
    with OrtRunner(_layer_norm(), BackendSpec.parse("ort"), extra_outputs=["d"]) as r:
        assert r.probes_left_kernels() is False  # no LayerNormalization: d inside it must stay
    with OrtRunner(_layer_norm(), BackendSpec.parse("ort"), extra_outputs=["ln"]) as r:
        assert r.probes_left_kernels() is True  # the fused LayerNormalization writes ln itself


def test_without_probes_or_facts_it_cannot_tell():
    with OrtRunner(_conv_relu_conv(), BackendSpec.parse("ort")) as r:
        assert r.probes_left_kernels() is None  # nothing exposed: nothing to compare
    with OrtRunner(_conv_relu_conv(), BackendSpec.parse("ort"), extra_outputs=["r"], graph_facts=False) as r:
        assert r.probes_left_kernels() is None  # no optimised graph read


def test_optimised_graph_read_with_its_weights_written_nowhere(tmp_path, monkeypatch):
    """A session's facts come from ORT's optimised graph, its weights (a 64 × 64 MatMul's: 16 KB, past ORT's 1 KB
    threshold for writing them aside) written to a link to the null device (`ort_session._discarded`): the graph read
    is the one ORT writes with its weights in a file — the same nodes, the same compute dtypes — and nothing is left
    behind."""
    import os
    import tempfile

    from cp_debug.backends.ort import ort_session
    from cp_debug.backends.ort.ort_session import SessionSettings, make_session
    from cp_debug.determinism import Determinism

    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
                          "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    how = SessionSettings("ort-cpu-fp32", Determinism())
    seen = []
    real = ort_session._discarded
    monkeypatch.setattr(ort_session, "_discarded", lambda path: (real(path), seen.append(os.path.islink(path))))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _, linked = make_session(model, ["CPUExecutionProvider"], False, how, ["y"])
    assert seen == [True] and not list(tmp_path.iterdir())
    monkeypatch.setattr(ort_session, "_discarded", lambda path: None)  # written to a file, as before
    _, written = make_session(model, ["CPUExecutionProvider"], False, how, ["y"])
    assert linked.error is None and linked.nodes and linked.nodes == written.nodes
    assert linked.compute_dtypes == written.compute_dtypes
