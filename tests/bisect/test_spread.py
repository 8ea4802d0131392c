"""Issue 115, item 1 where no layer is the cause (bisect/cures/spread.py): the error accumulates, said with its
evidence. basic-pitch's note model in INT8 named no layer and no set ("confirmed by no intervention"), though the
right answer — no node alone out of INT8 brings its notes back, nor half of the graph — was all there was to say.

Here twelve `MatMul + Add` layers each write one loud channel (300, read by no later layer) beside 31 quiet ones
(|x| ~ 1): per-tensor INT8 rounds 78 % of every layer's quiet values to 0, and the quiet channels are the output.
No layer left out of INT8 alone brings the output back, no set of the six ranked, neither half of the graph: "no
single layer: the error accumulates", each half's run said — never offered as the cure. The right answer by hand:
ONNX Runtime's `quantize_static` with either half in `nodes_to_exclude` leaves the output as far off."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug

N, DEPTH = 32, 12


def _chain() -> tuple[onnx.ModelProto, np.ndarray]:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(DEPTH):
        w = (rng.standard_normal((N, N)) / np.sqrt(N)).astype(np.float32)
        w[0, :] = 0  # the loud channel feeds nothing
        b = np.zeros(N, np.float32)
        b[0] = 300.0  # each layer's per-tensor range set by its loud channel
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], f"mm{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"h{i}"], f"add{i}")]
        x = f"h{i}"
    nodes.append(helper.make_node("Slice", [x, "lo", "hi", "ax"], ["out"], "quiet_channels"))
    inits += [numpy_helper.from_array(np.array([v], np.int64), k) for k, v in (("lo", 1), ("hi", N), ("ax", 1))]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, N])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, N - 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, rng.standard_normal((4, N)).astype(np.float32)


def _rel_quantized(tmp_path, model, x, exclude) -> float:
    """The output's rel. RMS error with ONNX Runtime's own INT8 (QDQ) of `model`, `exclude` left out."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": x}])

        def get_next(self):
            return next(self._it, None)

    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    nodes_to_exclude=list(exclude))
    def run(p):
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref, got = run(tmp_path / "m.onnx"), run(tmp_path / "q.onnx")
    return float(np.sqrt(np.mean((got - ref) ** 2) / np.mean(ref ** 2)))


def test_no_layer_no_half_brings_the_output_back_the_error_accumulates(tmp_path):
    model, x = _chain()
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=x)
    first = [f"{op}{i}" for i in range(DEPTH // 2) for op in ("mm", "add")]
    second = [f"{op}{i}" for i in range(DEPTH // 2, DEPTH) for op in ("mm", "add")]
    for half in (first, second):  # the right answer, by hand: either half out of INT8 leaves the output far off
        assert _rel_quantized(tmp_path, model, x, half) > 0.3
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "x.npz", "-b", "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json", "--quiet")
    rep = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 4 and rep["outcomes"]["ort-cpu-int8"] == "degraded", rep["outcome_reasons"]
    cause = rep["root_cause"]["ort-cpu-int8"]
    found = cause["intervention"]
    assert not found["confirmed"] and not found["keep"]
    assert found["spread"] == {"accumulates": True, "tie": None, "within": []}
    halves = [t for t in found["tried"] if t["candidate"] in ("the graph's first half", "the graph's second half")]
    assert [sorted(t["nodes"]) for t in halves] == [sorted(first), sorted(second)], halves
    assert all(not t["back"] and t["output_error_after"]["ratio"] > 2 for t in halves), halves
    assert "no single layer: the error accumulates; no layer alone, no set of the ranked and no half" in cause["hint"]
