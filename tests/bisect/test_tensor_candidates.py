"""Tensors as candidates (issue 115, item 1; bisect/cures/shared_scale.py): a user's per-tensor Q/DQ file
(torch.onnx's export of tests/bisect/int8_shared_scale.py, ONNX Runtime's `quantize_static(per_channel=False)` on
four random frames) whose one scale covers a Concat of pixel boxes (0–320) and class scores (0–1). Every layer's own
error is small and the output's relative error too (the boxes dominate it); at the application's decision
(`--metric …:kept`, a score above 0.5) all 128 flip. Before, no root cause was named (the ranking's layers restored
each leave the decision flipped); now the Concat's shared scale is a candidate of the intervention, confirmed.

The right answer without cp_debug, by intervention with plain ONNX Runtime sessions: the file flips all 128 scores;
the same file with the Q/DQ pairs that read the Concat's scale removed flips none (and no other single scale's
pairs removed does: the backbone's); the file ONNX Runtime's quantizer writes with `nodes_to_exclude=['/Concat']`
(the cure) flips none.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, two quantizations and a bisect with its intervention (~10 s idle)

MODEL = Path(__file__).with_name("int8_shared_scale.py")


def _quantized(tmp_path: Path, folder: str, exclude: tuple[str, ...] = ()) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(2)
            self._frames = iter([{"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self._frames, None)

    out = tmp_path / folder
    out.mkdir()
    quantize_static(str(tmp_path / "det.onnx"), str(out / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=False, nodes_to_exclude=list(exclude))
    return out


def _export(tmp_path: Path) -> np.ndarray:
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("int8_shared_scale", MODEL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net, (x,) = mod.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "det.onnx"), input_names=["x"], output_names=["dets"],
                          dynamo=False)
    np.savez(tmp_path / "x.npz", x=x.numpy())
    return x.numpy()


def _flips(model, x: np.ndarray, ref: np.ndarray) -> int:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return int(((ref[..., 4:] > 0.5) != (got[..., 4:] > 0.5)).sum())


def _without_scale(path: Path, scale: str) -> onnx.ModelProto:
    """The file with every Q/DQ pair that reads `scale` removed, written here with onnx alone: each pair's readers
    (or the graph output) read the float tensor that entered it."""
    m = onnx.load(path)
    g = m.graph
    qs = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[1] == scale]
    for q in qs:
        dq = next(n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
        src, out = q.input[0], dq.output[0]
        if any(o.name == out for o in g.output):  # the float tensor's producer writes the output
            for n in g.node:
                n.output[:] = [out if o == src else o for o in n.output]
                n.input[:] = [out if i == src else i for i in n.input]
        else:
            for n in g.node:
                n.input[:] = [src if i == out else i for i in n.input]
        g.node.remove(q)
        g.node.remove(dq)
    return m


def test_the_concat_s_shared_scale_is_the_root_cause_confirmed_with_its_cure(tmp_path):
    import onnxruntime as ort

    x = _export(tmp_path)
    folder = _quantized(tmp_path, "q")
    ref = ort.InferenceSession(str(tmp_path / "det.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # the right answer, without cp_debug
    assert _flips(folder / "model.onnx", x, ref) == 128
    assert _flips(_without_scale(folder / "model.onnx", "/Concat_output_0_scale"), x, ref) == 0
    assert _flips(_without_scale(folder / "model.onnx", "/backbone/backbone.1/Relu_output_0_scale"), x, ref) == 128
    assert _flips(_quantized(tmp_path, "cured", ("/Concat",)) / "model.onnx", x, ref) == 0

    proc = cpdebug("bisect", "--onnx", tmp_path / "det.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort,ort@{folder}", "--metric", f"{MODEL}:kept", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    label = f"ort@{folder}"
    cause = report["root_cause"][label]
    assert cause["probe"] == "/Concat_output_0" and cause["confirmed"], cause
    hint = cause["hint"]
    assert hint.startswith("one per-tensor INT8 scale covers Concat '/Concat''s inputs of very different ranges"), hint
    assert "'/Concat_output_0_scale'" in hint and "nodes_to_exclude=['/Concat']" in hint, hint
    cure = next(t for t in cause["intervention"]["tried"] if t["back"])
    assert cure["how"] == ["its scale's Q/DQ pairs removed"] and cure["tensors"] == ["/Concat_output_0_scale"], cure
    before, after = cure["output_error_before"], cure["output_error_after"]
    assert before["decisions_flipped"] == 1 and after["decisions_flipped"] == 0, cure
    assert "no single layer dominates" not in hint, hint


def test_through_torch_the_scale_is_named_at_the_output_it_reaches(tmp_path):
    """`--torch` probes the model's modules: no probe holds the Concat's inputs, so their values are the file's own
    with its activations' Q/DQ pairs removed, and the scale is named at the graph output its pairs reach."""
    _export(tmp_path)
    folder = _quantized(tmp_path, "q")
    proc = cpdebug("bisect", "--torch", f"{MODEL}:build", "-b", f"torch,ort@{folder}", "--metric", f"{MODEL}:kept",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{folder}"]
    assert cause["confirmed"], cause
    assert cause["hint"].startswith("one per-tensor INT8 scale covers Concat '/Concat''s inputs"), cause["hint"]
    assert "nodes_to_exclude=['/Concat']" in cause["hint"], cause["hint"]
