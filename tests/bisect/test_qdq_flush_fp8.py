"""The FP8 counterpart of tests/bisect/test_qdq_flush.py (issue 115, item 2; bisect/findings/qdq_flush.py): a user's
float8 (E4M3FN) Q/DQ file that flushes to zero before a Log, named at the producer with its keep set.

The same log-magnitude front end, `Conv → Mul(y, y) → Add(eps) → Sqrt → Max(1e-12) → Log → Conv`, at opset 19,
quantized by ONNX Runtime's `quantize_static` to float8 E4M3FN (QDQ, per tensor; its float calibration is the
histogram's), each activation's scale then set to amax / 448 over the calibration frames as ModelOpt's FP8 writes it
(ORT's histogram clips the loud columns; it also writes the scalar eps's scale as 0, set here to eps / 448). Two loud
columns set `power`'s range (236): float8's smallest subnormal, 2^-9 × its scale 0.53, reads the quiet bins'
powers (|x| < 5e-4) as 0 — 61 % of them — and the Log makes -27.6 of them. The right answer by hand: that share, and
the file with the pairs of `power` and `power_eps` removed comes back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from tests.bisect.test_qdq_flush import logpow
from tests.cli_run import cpdebug


def _frame(rng) -> np.ndarray:
    x = rng.standard_normal((1, 2, 16, 32)).astype(np.float32) * 0.02
    x[..., :2] = rng.standard_normal((1, 2, 16, 2)) * 5  # a few loud columns set the ranges
    return x


def _run(model: onnx.ModelProto, feed: dict, extra=()) -> list[np.ndarray]:
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend([onnx.ValueInfoProto(name=t) for t in extra])
    # optimisations off, as cp_debug runs a float8 Q/DQ file (backends/ort/ort_precision.FP8_ORT_NOTE): onnxruntime
    # 1.30 fuses the pairs into a QLinearConv that refuses float8 at its default level
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def _files(tmp_path: Path):
    from onnx import numpy_helper
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    model = logpow(19)
    onnx.save(model, tmp_path / "m.onnx")
    x = _frame(np.random.default_rng(1))
    np.savez(tmp_path / "x.npz", x=x)
    frames = [{"x": _frame(np.random.default_rng(2 + k))} for k in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._frames = iter(frames)

        def get_next(self):
            return next(self._frames, None)

    (tmp_path / "q").mkdir()
    path = tmp_path / "q" / "model.onnx"
    quantize_static(str(tmp_path / "m.onnx"), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                    calibrate_method=CalibrationMethod.Distribution, activation_type=QuantType.QFLOAT8E4M3FN,
                    weight_type=QuantType.QFLOAT8E4M3FN)
    q = onnx.load(path)
    acts = {n.input[0]: n.input[1] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    named = {t: t if t in {n.output[0] for n in model.graph.node} | {"x"} else "out" for t in acts}  # the output's
    seen = [_run(model, f, [t for t in set(named.values()) if t not in ("x", "out")]) for f in frames]
    order = ["out", *[t for t in set(named.values()) if t not in ("x", "out")]]
    amax = {t: max(float(np.abs(r[k]).max()) for r in seen) for k, t in enumerate(order)}
    amax["x"] = max(float(np.abs(f["x"]).max()) for f in frames)
    scales = {acts[t]: amax[named[t]] / 448 for t in acts}
    scales["eps_scale"] = 1e-8 / 448
    for init in q.graph.initializer:
        if init.name in scales:
            init.CopyFrom(numpy_helper.from_array(np.array(scales[init.name], np.float32), init.name))
    onnx.save(q, path)
    return model, q, x, scales[acts["power_eps"]]


def _without_pairs(q: onnx.ModelProto, tensors: set[str]) -> onnx.ModelProto:
    """`q` with the activation pairs of `tensors` removed (their readers read the float tensor)."""
    m = onnx.ModelProto()
    m.CopyFrom(q)
    qs = {n.output[0]: n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in tensors}
    dqs = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in qs]
    source = {d.output[0]: qs[d.input[0]].input[0] for d in dqs}
    for n in m.graph.node:
        n.input[:] = [source.get(i, i) for i in n.input]
    keep = [n for n in m.graph.node if n not in dqs and n not in qs.values()]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


def test_an_fp8_file_that_flushes_before_the_log_is_named_at_its_producer_with_its_keep_set(tmp_path):
    model, q, x, scale = _files(tmp_path)
    ref_out, power_eps = _run(model, {"x": x}, ["power_eps"])
    nonzero = power_eps[power_eps != 0]
    share = float(np.mean(np.abs(nonzero) < scale * 2.0 ** -10))  # the right answer, by hand: float8 reads them 0
    assert share > 0.3, share

    def rel(m):
        return float(np.sqrt(np.mean((_run(m, {"x": x})[0] - ref_out) ** 2) / np.mean(ref_out ** 2)))
    assert rel(q) > 0.3 and rel(_without_pairs(q, {"power", "power_eps"})) < 0.1  # its keep set brings it back

    label = f"ort@{tmp_path / 'q'}"
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b", f"ort,{label}",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["judged_at"][label] == "fp8" and report["first_divergent"][label] == "logmag"
    cause = report["root_cause"][label]
    assert cause["probe"] == "power_eps", cause  # at the producer of the Log's input, not the Log
    found = next(f for f in report["findings"][label] if f["fault"] == "qdq flush")
    assert found["role"] == "where" and abs(found["number"] - share) < 0.05, found
    hint = cause["hint"]
    assert hint.startswith("FP8 flushes to zero before the Log 'log': its input's producer Add 'add_eps' writes "
                           "'power_eps'"), hint
    assert "verified at the outputs: keeping 'power_eps', 'power' float" in hint, hint
    assert "INT8" not in hint.partition("; confirmed by")[0], hint  # its own format's words
    assert cause["confirmed"] and cause["intervention"]["probe"] == "power_eps", cause["intervention"]
    cure = next(t for t in cause["intervention"]["tried"] if t["how"] == ["kept float (its Q/DQ pairs removed)"])
    assert cure["back"] and {"power_QuantizeLinear", "power_eps_QuantizeLinear"} <= set(cure["nodes"]), cure
