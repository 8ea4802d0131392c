"""A flush before a Log behind a linear producer (issue 115, item 2; bisect/findings/qdq_flush.py): swift-f0's INT8,
in small. Its log filterbank, `MatMul(power, filters) → Add(eps) → Log`, reads a power its STFT's MatMuls wrote
through Q/DQ pairs: the quiet frames (a sung tone with 0.2 s of silence, a little noise) flush to zero at the STFT's
and the power's per-tensor ranges, set by the loud harmonics, before the filterbank, and its own output's pair
flushes 81 % of the filtered powers besides. The filterbank's own pair removed changes nothing at the output (its
input is already flushed): the finding stopped there — "no better: no cure offered" — and the root read "INT8
resolution lost … restored together: mel, re, im". Now the front end is tried whatever writes the pairs (a MatMul
here, any producer), and the flush before the Log is the root, confirmed, its cure the nodes before the Log left out
of INT8.

Made here with onnx, quantized by the built-in INT8 candidate (ONNX Runtime's `quantize_static`, QDQ, its MatMuls) on
another glide. The right answer without cp_debug: the built-in's quantizer with the front end's MatMuls in
`nodes_to_exclude` brings the output back, the filterbank alone does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from tests.cli_run import cpdebug

N, BINS, FILTERS = 128, 65, 16  # the STFT's frame, its bins, the filterbank's filters


def log_filterbank() -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    n, k = np.arange(N), np.arange(BINS)
    window = np.hanning(N)[:, None]
    fb = np.maximum(0.0, 1 - np.abs(k[:, None] - (2 + 3.8 * np.arange(FILTERS))[None]) / 4.0)  # triangles
    inits = [numpy_helper.from_array((np.cos(2 * np.pi * np.outer(n, k) / N) * window).astype(np.float32), "cos"),
             numpy_helper.from_array((-np.sin(2 * np.pi * np.outer(n, k) / N) * window).astype(np.float32), "sin"),
             numpy_helper.from_array(fb.astype(np.float32), "fb"),
             numpy_helper.from_array(np.array(1e-10, np.float32), "eps"),
             numpy_helper.from_array((np.random.default_rng(0).standard_normal((FILTERS, 8)) * 0.3).astype(np.float32),
                                     "head_w")]
    nodes = [helper.make_node("MatMul", ["x", "cos"], ["re"], "dft_re"),
             helper.make_node("MatMul", ["x", "sin"], ["im"], "dft_im"),
             helper.make_node("Mul", ["re", "re"], ["re2"], "re2"),
             helper.make_node("Mul", ["im", "im"], ["im2"], "im2"),
             helper.make_node("Add", ["re2", "im2"], ["power"], "power"),
             helper.make_node("MatMul", ["power", "fb"], ["mel"], "fbank"),
             helper.make_node("Add", ["mel", "eps"], ["mel_eps"], "add_eps"),
             helper.make_node("Log", ["mel_eps"], ["logmel"], "log"),
             helper.make_node("MatMul", ["logmel", "head_w"], ["y"], "head")]
    graph = helper.make_graph(nodes, "log_filterbank", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                       [1, 60, N])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 60, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def glide(seed: int) -> np.ndarray:
    """A sung tone (seven harmonics) in 60 frames, frames 20–34 silent, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(60 * N) / 16000.0
    f0 = 180 + 40 * rng.random()
    s = sum(np.sin(2 * np.pi * f0 * (i + 1) * t) / (i + 1) for i in range(7))
    s[20 * N:35 * N] = 0
    return (s + rng.standard_normal(s.shape) * 1e-4).reshape(1, 60, N).astype(np.float32)


def _error(model, x: np.ndarray, ref: np.ndarray) -> float:
    import onnxruntime as ort

    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def test_a_flush_behind_the_filterbank_matmul_is_the_root_with_the_front_end_its_cure(tmp_path: Path):
    import onnxruntime as ort

    from cp_debug.precision.int8 import quantize_int8

    model, x, calib = log_filterbank(), glide(1), glide(2)
    onnx.save(model, tmp_path / "model.onnx")
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # the right answer, without cp_debug: the quantizer with the filterbank, or the front end, in nodes_to_exclude
    err = {ex: _error(quantize_int8(model, [{"x": calib}], exclude_nodes=ex).model, x, ref)
           for ex in ((), ("fbank",), ("fbank", "dft_re", "dft_im"))}
    assert err[("fbank",)] > 0.9 * err[()] and err[("fbank", "dft_re", "dft_im")] < 0.1 * err[()], err

    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=calib)
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "calib.npz", "-b", "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]
    hint = cause["hint"]
    assert cause["probe"] == "mel" and cause["confirmed"], cause
    assert hint.startswith("INT8 flushes to zero before the Log 'log': its input's producer MatMul 'fbank' writes "
                           "'mel', whose Q/DQ pair"), hint
    assert "keeping 'mel' float moves the outputs" in hint and "not back; with every activation pair before the Log " \
        "removed too (5 tensors: " in hint and "they come back" in hint, hint
    keep = set(cause["intervention"]["keep"])
    assert {"fbank", "dft_re", "dft_im"} <= keep and "head" not in keep, cause["intervention"]
