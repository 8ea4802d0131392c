"""The CPU's float16 emulation computes what a float16 machine stores: every float16 tensor rounded after its node.

ONNX Runtime's CPU provider runs a float16 Conv chain in float32 and drops the Casts between the Convs, so an
activation past 65504 stays finite there; a GPU holds it in float16, where it is inf. The emulating graph must
give the GPU's answer (a numpy model of float16 storage with float32 accumulation), keep the graph's interface,
and the runner must use it on the CPU by default and say so.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec
from cp_debug.precision.fp16 import convert_to_fp16
from cp_debug.precision.half_storage import emulate_half_storage, holds_half_constants

W1 = np.array([[[[300.0]]], [[[0.5]]]], np.float32)  # two output channels, 1x1: channel 0 overflows at x > 218
W2 = np.array([[[[1.0]], [[1.0]]]], np.float32)  # sums the two channels
W3 = np.array([[[[1e-3]]]], np.float32)  # scales the sum back into range


def _chain() -> onnx.ModelProto:
    """x (1,1,1,4) → Conv(W1) → Relu → Conv(W2) → Conv(W3) → y, float32."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"), helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Conv", ["b", "w2"], ["c"], name="c2"), helper.make_node("Conv", ["c", "w3"], ["y"],
                                                                                       name="c3")]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 4])],
        [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(W2, "w2"), numpy_helper.from_array(W3, "w3")])
    # IR 8 (opset 17's): onnx's newest IR is more than an older ONNX Runtime reads (1.30 reads up to 13)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _stored(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x.astype(np.float16).astype(np.float32)


def _gpu_like(x: np.ndarray, keep_c2: bool = False) -> np.ndarray:
    """float16 storage of every tensor, float32 arithmetic (a GPU's float16 conv accumulates in float32)."""
    w1, w2, w3 = (_stored(w.reshape(w.shape[0], -1)) for w in (W1, W2, W3))
    with np.errstate(over="ignore", invalid="ignore"):
        a = _stored(w1 @ _stored(x.reshape(1, -1)))
        b = np.maximum(a, 0)
        c = (W2.reshape(1, -1) @ b) if keep_c2 else _stored(w2 @ b)  # a kept node: float32 weights and output
        return _stored(w3 @ _stored(c)).reshape(1, 1, 1, -1)


X = np.array([[[[0.1, 1.0001, 100.0, 250.0]]]], np.float32)  # 250·300 = 75000 overflows float16


def _run(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0].astype(np.float32)


def test_emulation_overflows_where_a_gpu_does_and_ort_cpu_does_not():
    half = convert_to_fp16(_chain())
    native = _run(half, {"x": X})
    assert np.isfinite(native).all()  # the CPU provider kept the 75000 in float32: no overflow
    emulated = emulate_half_storage(half)
    got = _run(emulated.model, {"x": X})
    want = _gpu_like(X)
    assert np.isinf(want[0, 0, 0, 3]) and np.isinf(got[0, 0, 0, 3])
    np.testing.assert_array_equal(got, want)
    assert emulated.rounded >= 4 and emulated.constants == 3
    assert all(t.data_type == TensorProto.FLOAT for t in emulated.model.graph.initializer)


def test_kept_nodes_compute_in_float32_and_the_interface_is_unchanged():
    half = convert_to_fp16(_chain(), keep_fp32_nodes=["c2"])
    got = _run(emulate_half_storage(half).model, {"x": X})
    np.testing.assert_array_equal(got, _gpu_like(X, keep_c2=True))
    io16 = convert_to_fp16(_chain(), keep_io_types=False)  # float16 graph input and output
    em = emulate_half_storage(io16).model
    assert [(i.name, i.type.tensor_type.elem_type) for i in em.graph.input] == [("x", TensorProto.FLOAT16)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in em.graph.output] == [("y", TensorProto.FLOAT16)]
    onnx.checker.check_model(em)
    out = _run(em, {"x": X.astype(np.float16)})
    np.testing.assert_array_equal(out, _gpu_like(X))
    assert not emulate_half_storage(_chain()).changed and emulate_half_storage(io16).changed
    assert not holds_half_constants(_chain()) and holds_half_constants(io16)


def test_the_cpu_runner_emulates_by_default_and_says_so(monkeypatch):
    spec = BackendSpec.parse("ort-cpu-fp16")
    with OrtRunner(_chain(), spec, extra_outputs=["a"]) as r:
        out = r.infer({"x": X})
        report = r.precision_report()
    np.testing.assert_array_equal(out["y"], _gpu_like(X))
    assert np.isinf(out["a"][0, 0, 0, 3])  # the probe is the stored (overflowed) value
    assert report.effective == "fp16" and any("emulated" in n for n in report.notes)
    monkeypatch.setenv("CPDEBUG_ORT_CPU_HALF", "native")
    with OrtRunner(_chain(), spec) as r:
        assert np.isfinite(r.infer({"x": X})["y"]).all()
        assert not any("emulated" in n for n in r.precision_report().notes)
    monkeypatch.setenv("CPDEBUG_ORT_CPU_HALF", "sometimes")
    with pytest.raises(Exception, match="CPDEBUG_ORT_CPU_HALF"):
        OrtRunner(_chain(), spec).activate()


def test_a_constant_of_shape_that_is_a_graph_output_stays_float16():
    """A lockstep segment that ends at a ConstantOfShape's float16 zeros (ddddocr's recogniser: the LSTM's initial
    state) is a graph output declared float16; its value widened to float32 made ONNX Runtime refuse the emulating
    graph ("Type (tensor(float16)) of output arg … does not match", exit 2)."""
    value = numpy_helper.from_array(np.array([1.5], np.float16), "value")
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("ConstantOfShape", ["s"], ["y"], name="fill", value=value),
         helper.make_node("Relu", ["x"], ["z"], name="relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT16, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    emulated = emulate_half_storage(model).model
    y, z = ort.InferenceSession(emulated.SerializeToString()).run(None, {"x": -np.ones((2, 3), np.float16)})
    assert y.dtype == np.float16 and (y == 1.5).all() and (z == 0).all()


def test_an_emulating_graph_is_run_as_it_is_and_one_converted_again_is_emulated():
    """The graph a runner ran (emulated), outputs added (the screen's), is not emulated a second time: the same
    values; a float16 Cast added to it afterwards is no emulating graph's any more."""
    emulated = emulate_half_storage(convert_to_fp16(_chain())).model
    exposed = onnx.ModelProto()
    exposed.CopyFrom(emulated)
    exposed.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    again = emulate_half_storage(exposed)
    assert not again.changed and again.model is exposed
    np.testing.assert_array_equal(_run(again.model, {"x": X}), _gpu_like(X))
    exposed.graph.node.append(helper.make_node("Cast", ["c"], ["c16"], name="more", to=TensorProto.FLOAT16))
    assert emulate_half_storage(exposed).changed
