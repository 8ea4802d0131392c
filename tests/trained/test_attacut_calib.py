"""A pair's own scale, set as the quantizer sets it (issue 115: "every cure offered holds at the output"): attacut's
Thai word boundaries (tests/trained/attacut.py) in a user's per-channel `quantize_static` file calibrated on the even
windows; window 15 loses a word start (0.566 → 0.361). Without cp_debug, `nodes_to_exclude=['/conv1/conv/Conv']`
leaves it lost (its output's pair past the Transpose and Unsqueeze, read by the Concat, is calibrated by the
quantizer on the calibration set: 0.361 again), where leaving out `conv2` brings it back. The intervention in the
file gives such a pair a scale of its own; it was set on the judged window alone, a scale that fits that window and
brought the word start back (0.502): `conv1` was "confirmed". Now, with `--calib`, the pair's scale is the MinMax over
the calibration samples, as the quantizer calibrated the file (`qdq_removal.reference_values`), and the layer named is
one whose exclusion by the quantizer itself brings the decision back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, four quantizations and a bisect with its intervention (~20 s)
HERE = Path(__file__).resolve().parent
JUDGED = 15


def _quantized(path: Path, calib: list[np.ndarray], out: Path, exclude: tuple[str, ...] = ()) -> Path:
    """The user's file: ONNX Runtime's `quantize_static`, Q/DQ, per channel, its other defaults."""
    import onnx

    from tests.trained.corpus import int8

    onnx.save(int8(onnx.load(path), [{"chars": c} for c in calib], exclude, per_channel=True), out)
    return out


def test_a_pairs_own_scale_is_calibrated_on_the_calibration_set(tmp_path):
    import onnxruntime as ort
    import torch

    from tests.trained.attacut import CALIB, model, windows
    from tests.trained.corpus import needs

    needs("attacut", "pip install --no-deps attacut==1.0.6: its files only")

    w = windows()
    calib = [w[i] for i in CALIB]
    fp32 = tmp_path / "attacut.onnx"
    torch.onnx.export(model(), (torch.from_numpy(w[JUDGED]),), str(fp32), input_names=["chars"],
                      output_names=["boundary"], opset_version=17, dynamo=False)

    def starts(path: Path) -> np.ndarray:
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"chars": w[JUDGED]})[0]
        return got > 0.5

    ref = starts(fp32)
    (tmp_path / "q").mkdir()
    user = _quantized(fp32, calib, tmp_path / "q" / "model.onnx")
    assert (starts(user) != ref).any()  # the user's file loses a word start
    # the right answer, without cp_debug: the quantizer's own exclusion of conv1 leaves it lost, of conv2 brings it back
    assert (starts(_quantized(fp32, calib, tmp_path / "c1.onnx", ("/conv1/conv/Conv",))) != ref).any()
    assert (starts(_quantized(fp32, calib, tmp_path / "c2.onnx", ("/conv2/conv/Conv",))) == ref).all()

    np.savez(tmp_path / "x.npz", chars=w[JUDGED])
    np.savez(tmp_path / "c.npz", chars=np.concatenate(calib))
    label = f"ort@{tmp_path / 'q'}"
    proc = cpdebug("bisect", "--onnx", fp32, "--inputs", tmp_path / "x.npz", "--calib", tmp_path / "c.npz", "-b",
                   f"ort-cpu,{label}", "--metric", f"{HERE / 'attacut.py'}:boundary_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"][label]
    assert cause["confirmed"], cause["hint"]
    assert cause["probe"] != "/conv1/conv/Conv_output_0", cause["hint"]
    tried = {t["candidate"]: t for t in cause["intervention"]["tried"] if isinstance(t["candidate"], str)}
    assert tried["/conv1/conv/Conv_output_0"]["back"] is False, tried  # as the quantizer's own exclusion: still lost
    # the cure named holds as the quantizer applies it
    nodes = tuple(tried[cause["probe"]]["nodes"])
    assert (starts(_quantized(fp32, calib, tmp_path / "cure.onnx", nodes)) == ref).all(), (nodes, cause["hint"])
