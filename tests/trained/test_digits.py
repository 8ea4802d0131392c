"""digit-recognizer-py 0.1.0's handwritten-digit CNN (tests/trained/digits.py; its ONNX export stored,
tests/data/trained/digit_cnn.onnx), tried as a new user: healthy in INT8, by hand and by cp_debug.

The right answer, without cp_debug: ONNX Runtime's `quantize_static` (Q/DQ, its defaults, scikit-learn's digits
100 … 199 one at a time) moves none of the 100 digits judged (0 … 99; the smallest reference margin 0.039 in the
logits); cp_debug's built-in INT8 candidate and the user's file are within precision, the metric held — no false
alarm on a healthy candidate (every digit the reference's)."""

from __future__ import annotations

import numpy as np

from tests.cli_run import cpdebug
from tests.trained.made import quantize_row_by_row
from tests.trained.digits import MODEL, images

HERE = "tests/trained/digits.py:digit_metric"


def test_the_digit_cnn_in_int8_is_healthy_by_hand_and_by_cp_debug(tmp_path):
    import onnxruntime as ort

    judged, cal = images(0, 100), images(100, 100)

    (tmp_path / "q").mkdir()
    quantize_row_by_row(MODEL, tmp_path / "q" / "model.onnx", "image", cal)

    def digits(path) -> np.ndarray:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": judged})[0]

    ref = digits(MODEL)
    assert (digits(tmp_path / "q" / "model.onnx").argmax(1) == ref.argmax(1)).all()  # by hand: none moves
    np.savez(tmp_path / "x.npz", image=judged)
    np.savez(tmp_path / "c.npz", image=cal)
    for backends, extra in (("ort-cpu,ort-cpu-int8", ("--calib", tmp_path / "c.npz")),
                            (f"ort-cpu,ort@{tmp_path / 'q'}", ())):
        proc = cpdebug("bisect", "--onnx", MODEL, "--inputs", tmp_path / "x.npz", "-b", backends, *extra,
                       "--metric", HERE)
        said = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode == 0, said[-3000:]
        assert "within precision" in said and "where the reference gives 1 (held)" in said, said[-3000:]
