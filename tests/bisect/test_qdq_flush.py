"""A user's per-tensor INT8 file that flushes to zero before a Log (issue 115, item 2; bisect/findings/qdq_flush.py).

A log-magnitude front end, `Conv → Mul(y, y) → Add(eps) → Sqrt → Max(1e-12) → Log → Conv`, made here with onnx and
quantized by ONNX Runtime's `quantize_static` (QDQ, per tensor, QInt8) on its own four calibration frames: quiet
inputs (|x| ~ 0.05) with two loud columns (×100) that set every range. The pairs of `power` and `power_eps`
(scale ≈ 1, zero point -128) read 9 in 10 of the reference's powers as 0, and the Log turns them into -27.6: the
Log's error is 30× its chain's, no pair's own error shows it. As DNSMOS's `sig_bak_ovr.onnx` (the STFT's power
spectrum in a user's INT8 file) does.

The right answer without cp_debug, with plain ONNX Runtime and numpy: the share of `power_eps`'s reference values
below half its pair's step, and the file with every activation pair before the Log removed comes back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from tests.cli_run import cpdebug


def _frame(rng) -> np.ndarray:
    x = rng.standard_normal((1, 2, 16, 32)).astype(np.float32) * 0.05
    x[..., :2] *= 100  # a few loud columns set the ranges
    return x


def logpow(opset: int = 17) -> onnx.ModelProto:
    """The log-magnitude front end at `opset` (float8's Q/DQ asks 19: tests/bisect/test_qdq_flush_fp8.py)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 2, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((4, 8, 1, 1)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(1e-8, np.float32), "eps"),
             numpy_helper.from_array(np.array(1e-12, np.float32), "floor")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["y"], "conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["y", "y"], ["power"], "square"),
             helper.make_node("Add", ["power", "eps"], ["power_eps"], "add_eps"),
             helper.make_node("Sqrt", ["power_eps"], ["mag"], "sqrt"),
             helper.make_node("Max", ["mag", "floor"], ["floored"], "floor_max"),
             helper.make_node("Log", ["floored"], ["logmag"], "log"),
             helper.make_node("Conv", ["logmag", "w2"], ["out"], "conv2")]
    graph = helper.make_graph(nodes, "logpow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 16, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 19 else 9
    return model


def _files(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = logpow()
    onnx.save(model, tmp_path / "m.onnx")
    x = _frame(np.random.default_rng(1))
    np.savez(tmp_path / "x.npz", x=x)

    class Reader(CalibrationDataReader):
        def __init__(self):
            r = np.random.default_rng(2)
            self._frames = iter([{"x": _frame(r)} for _ in range(4)])

        def get_next(self):
            return next(self._frames, None)

    (tmp_path / "q").mkdir()
    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / "q" / "model.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=False, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    return tmp_path / "m.onnx", tmp_path / "q", x


def _run(model, x: np.ndarray, extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    import onnxruntime as ort

    m = onnx.load(model) if not isinstance(model, onnx.ModelProto) else model
    m.graph.output.extend([onnx.ValueInfoProto(name=t) for t in extra])
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _without_activation_pairs(path: Path) -> onnx.ModelProto:
    """The file with every activation Q/DQ pair removed (their readers read the float tensor that entered them)."""
    m = onnx.load(path)
    g = m.graph
    inits = {t.name for t in g.initializer}
    qs = {n.output[0]: n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    dqs = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in qs]
    source = {d.output[0]: qs[d.input[0]].input[0] for d in dqs}
    for n in g.node:
        n.input[:] = [source.get(i, i) for i in n.input]
    outputs = {o.name for o in g.output}
    for d in dqs:
        if d.output[0] in outputs:  # the graph output's own pair: its float producer writes it
            for n in g.node:
                n.output[:] = [d.output[0] if o == source[d.output[0]] else o for o in n.output]
    keep = [n for n in g.node if n not in dqs and n not in qs.values()]
    del g.node[:]
    g.node.extend(keep)
    return m


def test_the_pairs_that_flush_before_the_log_are_the_root_cause_with_their_share(tmp_path):
    reference, folder, x = _files(tmp_path)
    q = onnx.load(folder / "model.onnx")
    pair = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "power_eps")
    scale = float(onnx.numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == pair.input[1])))
    ref_out, power_eps = _run(reference, x, ("power_eps",))
    share = float(np.mean(np.abs(power_eps) < scale / 2))  # the right answer, by hand
    assert share > 0.8, share
    def rel(a):
        return float(np.sqrt(np.mean((a - ref_out) ** 2) / np.mean(ref_out ** 2)))
    assert rel(_run(folder / "model.onnx", x)[0]) > 0.5  # the file as deployed
    assert rel(_run(_without_activation_pairs(folder / "model.onnx"), x)[0]) < 0.05  # its activations float: back

    proc = cpdebug("bisect", "--onnx", reference, "--inputs", tmp_path / "x.npz", "-b", f"ort,ort@{folder}",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    label = f"ort@{folder}"
    cause = report["root_cause"][label]
    assert cause["probe"] == "power_eps", cause["probe"]  # the flushing tensor nearest the Log, not the Log
    assert report["first_divergent"][label] == "logmag"
    found = next(f for f in report["findings"][label] if f["fault"] == "qdq flush")
    assert found["role"] == "where" and abs(found["number"] - share) < 0.05, found
    hint = cause["hint"]
    assert hint.startswith("INT8 flushes to zero before the Log 'log': its input's producer Add 'add_eps' writes "
                           "'power_eps'"), hint
    assert f"rounds {share:.0%} of the reference's nonzero values to 0" in hint, hint
    assert "'power'" in hint and "they come back" in hint, hint
    assert "no single layer dominates" not in hint, hint  # a mechanism restored at the outputs: no accumulation said
    cure = next(t for t in cause["intervention"]["tried"] if t["how"] == ["kept float (its Q/DQ pairs removed)"]
                and t["back"])
    assert {"power_eps_QuantizeLinear", "power_QuantizeLinear", "x_QuantizeLinear"} <= set(cure["nodes"]), cure
    assert cause["confirmed"], cause
    # one story: the mechanism and its verified keep set, the intervention confirming that keep set; no older words
    # beside it (the file's re-quantization "tried and not enough", a layer's INT8 rounding)
    assert cause["intervention"]["probe"] == "power_eps" and not cause["intervention"]["set"], cause["intervention"]
    assert "confirmed by intervention: power_eps (every activation Q/DQ pair before the Log removed" in hint, hint
    assert "tried and not enough" not in hint and "quantisation error of this layer" not in hint, hint
    assert [f["fault"] for f in report["findings"][label] if f["role"] == "why"] == [], report["findings"][label]
