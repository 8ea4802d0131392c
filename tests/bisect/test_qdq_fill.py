"""A Q/DQ range set by a constant the graph writes (issue 115, item 2: "a fill said as such";
bisect/cures/qdq_fill.py). Keras' 'same' max-pool written as a Pad with a constant border far below the data (-1e4)
before a MaxPool (fer's mini-Xception rebuilt in PyTorch, tried as a new user): ONNX Runtime's `quantize_static`
calibrates the pad's output with its border, [-1e4, 0], and quantizes the MaxPool's output at the same scale, so
every value the pooling hands on rounds to zero and every label moves. Before, the file's pair was named ("rounds
100% ... its range is [-1e+04, 0]") with no word of what set it, and its cure (the MaxPool's and the Add's
exclusion) was "tried and not enough"; leaving the Pads out was not tried, and the trial of an exclusion kept the
scale the MaxPool's output shared with the pad (the quantizer calibrates it on its own values once the pad is left
out).

The right answer without cp_debug, with ONNX Runtime alone: the file flips most rows' argmax; `quantize_static` with
`nodes_to_exclude` of both Pads (the cure) flips none; one Pad alone left out leaves the other block collapsed. Now:
the fill said, the Pads the cure (verified, the MaxPool's pair given a scale of its own as the quantizer gives it),
the Pads left out together a candidate of the intervention (confirmed), diverged as before.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # two quantizations and a bisect with its intervention (~8 s idle)


def _model(path) -> None:
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def w(name, shape, scale=0.3):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    x, c = "x", 4
    for b, width in enumerate((8, 16)):
        nodes += [helper.make_node("Conv", [x, w(f"w{b}", (width, c, 3, 3)), w(f"b{b}", (width,), 0.1)], [f"c{b}"],
                                   name=f"/b{b}/conv/Conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{b}"], [f"r{b}"], name=f"/b{b}/Relu"),
                  helper.make_node("Conv", [f"r{b}", w(f"v{b}", (width, width, 3, 3)), w(f"d{b}", (width,), 0.1)],
                                   [f"s{b}"], name=f"/b{b}/sep/Conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Pad", [f"s{b}", f"pads{b}", f"fill{b}"], [f"p{b}"], name=f"/b{b}/Pad"),
                  helper.make_node("MaxPool", [f"p{b}"], [f"m{b}"], name=f"/b{b}/MaxPool", kernel_shape=[3, 3],
                                   strides=[2, 2]),
                  helper.make_node("Conv", [x, w(f"u{b}", (width, c, 1, 1))], [f"res{b}"], name=f"/b{b}/res/Conv",
                                   strides=[2, 2]),
                  helper.make_node("Add", [f"m{b}", f"res{b}"], [f"a{b}"], name=f"/b{b}/Add")]
        inits += [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), f"pads{b}"),
                  numpy_helper.from_array(np.array(-1e4, np.float32), f"fill{b}")]
        x, c = f"a{b}", width
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"], name="/pool"),
              helper.make_node("Flatten", ["g"], ["f"], name="/Flatten"),
              helper.make_node("Gemm", ["f", w("fc", (5, 16)), w("fb", (5,), 0.1)], ["z"], name="/fc/Gemm", transB=1),
              helper.make_node("Softmax", ["z"], ["probs"], name="/Softmax", axis=1)]
    graph = helper.make_graph(nodes, "filled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 4, 16, 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [16, 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _quantized(tmp_path, folder: str, exclude: tuple[str, ...] = ()):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": np.random.default_rng(2).standard_normal((16, 4, 16, 16)).astype(np.float32)}])

        def get_next(self):
            return next(self._it, None)

    (tmp_path / folder).mkdir()
    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / folder / "model.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=False, nodes_to_exclude=list(exclude))
    return tmp_path / folder


def _run(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_a_range_set_by_a_pads_fill_is_said_and_its_pads_are_the_cure(tmp_path):
    _model(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((16, 4, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    ref = _run(tmp_path / "m.onnx", x)
    user = _quantized(tmp_path, "int8")
    # by hand: the file moves most labels; the quantizer's own exclusion of both Pads none, one Pad alone not
    assert ((_run(user / "model.onnx", x).argmax(1) != ref.argmax(1)).sum()) >= 8
    cured = _quantized(tmp_path, "cured", ("/b0/Pad", "/b1/Pad"))
    assert (_run(cured / "model.onnx", x).argmax(1) == ref.argmax(1)).all()
    half = _quantized(tmp_path, "half", ("/b1/Pad",))
    assert ((_run(half / "model.onnx", x).argmax(1) != ref.argmax(1)).sum()) >= 4

    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{user}", "--quiet", "--json", tmp_path / "r.json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    label = f"ort@{user}"
    assert report["outcomes"] == {label: "diverged"}, report["outcome_reasons"]
    # the decision changed (15 of 16 labels) said first, then the local fault (the twelfth stop: one rule with --metric)
    assert report["outcome_reasons"][label].startswith(
        "the decision changes (no --metric declared: read at 0.5 / argmax): probs read at its argmax: 15 of 16")
    assert "; local fault at m0" in report["outcome_reasons"][label], report["outcome_reasons"]
    root = report["root_cause"][label]
    hint = root["hint"]
    assert root["probe"] == "p0", root  # the first pad's output: the tensor whose range the fill sets
    assert "a range set by the constant -1e+04 that Pad '/b" in hint, hint  # the fill, said as what sets the range
    assert "2 node(s) of the file write it into a quantized tensor" in hint, hint
    assert "nodes_to_exclude=['/b0/Pad', '/b1/Pad']" in hint, hint
    assert "calibrated on their own values, as the quantizer does, holds every output within int8" in hint, hint
    assert "confirmed by intervention: p0 (the Pad node(s) writing the constant -1e+04 that sets its range" in hint
    # the intervention tries the fill's nodes together (a tensor's constant as a candidate) and they bring it back
    tried = [t for t in root["intervention"]["tried"] if sorted(t["nodes"]) == ["/b0/Pad", "/b1/Pad"]]
    assert tried and tried[0]["output_error_after"]["within"], root["intervention"]["tried"]
    assert tried[0]["output_error_after"]["decisions_flipped"] == 0, tried
