"""magika's file-type classifier (tests/trained/magika_files.py, tried as a new user): its author's ONNX file (a JAX
model through tf2onnx) whose LayerNorms are written as ops, their variance E[x²] − E[x]².

The right answer, without cp_debug: ONNX Runtime's `quantize_static` (Q/DQ, its defaults: per tensor, every op it
quantizes), calibrated on the even files, changes the label of the JSON file (json 0.987 → snap 0.85); the first
LayerNorm's E[x]² (`Square_1`) left out of INT8 alone brings it back, its E[x²] (`truediv_1`) alone does not. Their
difference, the variance, is of the order of one step of their pairs: the Sub cancels them and amplifies their
rounding (×8.95). cp_debug names E[x]², confirmed by leaving it out of the file's INT8, with the mechanism at the Sub
(`cures/cancel_terms.py`); before, a GELU's x³ after it ("rounds 99% to zero", its range set by the damage),
confirmed by nothing — and a term left out in the file (`qdq_removal`) kept the pair the Sub reads it through, taking
the other term's pair for a weight."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # a quantization per exclusion by hand and a bisect with its intervention (~25 s)
HERE = Path(__file__).resolve().parent
JUDGED = 17  # the JSON file (held out: the even files calibrate)
LN = "jax2tf_get_logits_/pjit_get_logits_/MagikaV2/LayerNorm_0/"


def _quantized(src: Path, out: Path, feeds: np.ndarray, exclude=()) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from tests.trained.magika_files import CALIB

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"bytes": feeds[i:i + 1]} for i in CALIB])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(exclude))
    return out


def test_the_layernorms_cancelling_terms_are_named_with_their_mechanism(tmp_path):
    import onnxruntime as ort

    from tests.trained.corpus import needs, wheel_file

    needs("magika", "pip install --no-deps magika==1.0.3: its files only")
    from tests.trained.magika_files import MODEL, feeds, labels

    x, model = feeds(), wheel_file("magika", MODEL)

    def label(path: Path) -> str:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return labels(session.run(None, {"bytes": x[JUDGED:JUDGED + 1]})[0])[0]

    ref = label(model)
    assert ref == "json"
    (tmp_path / "q").mkdir()
    assert label(_quantized(model, tmp_path / "q" / "model.onnx", x)) != ref
    # by hand: E[x]² left out alone brings the label back, E[x²] alone does not; the Sub itself computes nothing
    assert label(_quantized(model, tmp_path / "a.onnx", x, [LN + "Square_1"])) == ref
    assert label(_quantized(model, tmp_path / "b.onnx", x, [LN + "truediv_1"])) != ref
    assert label(_quantized(model, tmp_path / "c.onnx", x, [LN + "Sub"])) != ref

    np.savez(tmp_path / "x.npz", bytes=x[JUDGED:JUDGED + 1])
    proc = cpdebug("bisect", "--onnx", model, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,ort@{tmp_path / 'q'}",
                   "--metric", f"{HERE / 'magika_files.py'}:label_metric", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    (cause,) = report["root_cause"].values()
    assert cause["probe"] == LN + "Square_1:0", cause["hint"][:2000]
    assert cause["confirmed"] and cause["intervention"]["keep"] == [LN + "Square_1"], cause["intervention"]
    assert f"Sub '{LN}Sub' subtracts two terms" in cause["hint"], cause["hint"][:2000]
    assert "the subtraction cancels them and amplifies their rounding" in cause["hint"], cause["hint"][:2000]
