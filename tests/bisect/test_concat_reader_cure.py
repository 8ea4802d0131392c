"""A Concat's shared scale whose cure is the Concat and its reader (issue 115: "every cure offered holds at the
output"; bisect/cures/shared_scale.py `with_cure`). pythainlp's deepcut (docs/trained-models.md, tenth stop): a user's
per-tensor `quantize_static` file moves 21 of 325 word boundaries; one scale (a step of 7.46) covers a Concat of its
embeddings (|x| ≤ 6) and its convolutions' maxima (up to 1,820). cp_debug named the Concat's output, confirmed by
removing the scale's pairs, and advised `nodes_to_exclude=[the Concat]` — which by hand changes nothing: its reader, a
BatchNorm's `Mul`, quantizes what it reads, so the quantizer keeps the pair. The graph here (tests/bisect/
int8_concat_reader.py) has that shape.

The right answer without cp_debug (plain ONNX Runtime, `quantize_static` with `nodes_to_exclude`): the file flips
the judged rows' decisions; the Concat left out alone flips as many; the Concat and the Mul left out flip none."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # three quantizations and a bisect with its intervention and its cure tried (~15 s)


def _quantized(src: Path, out: Path, calib: np.ndarray, exclude: list[str]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter([{"x": calib[i:i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self._feeds, None)

    out.mkdir()
    logging.disable(logging.WARNING)  # the quantizer's advice to pre-process
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(src), str(out / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                            nodes_to_exclude=exclude)
    finally:
        logging.disable(logging.NOTSET)
    return out / "model.onnx"


def test_the_concat_s_cure_leaves_out_the_reader_that_quantizes_it(tmp_path):
    import onnxruntime as ort

    from tests.bisect.int8_concat_reader import CONCAT, MUL, build, samples

    onnx.save(build(), tmp_path / "fp32.onnx")
    calib, x = samples(64, 1), samples(256, 2)

    def run(path: Path) -> np.ndarray:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].ravel()

    ref = run(tmp_path / "fp32.onnx")
    x = x[np.abs(ref - 0.5) > 0.05][:64]  # rows the application decides clearly (no tie left to INT8's noise)
    ref = run(tmp_path / "fp32.onnx")

    def flips(path: Path) -> int:
        return int(np.sum((run(path) > 0.5) != (ref > 0.5)))

    user = _quantized(tmp_path / "fp32.onnx", tmp_path / "q", calib, [])
    moved = flips(user)
    assert moved >= 5  # the file moves decisions
    assert flips(_quantized(tmp_path / "fp32.onnx", tmp_path / "c", calib, [CONCAT])) == moved  # the Concat alone
    assert flips(_quantized(tmp_path / "fp32.onnx", tmp_path / "cm", calib, [CONCAT, MUL])) == 0  # with its reader

    np.savez(tmp_path / "x.npz", x=x)
    proc = cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'q'}", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = next(iter(json.loads((tmp_path / "r.json").read_text())["root_cause"].values()))
    assert cause["probe"] == "features" and cause["confirmed"], cause
    hint = cause["hint"]
    assert hint.startswith("one per-tensor INT8 scale covers Concat 'concat''s inputs"), hint
    # before: "re-quantize with `nodes_to_exclude=['concat']`", untried — by hand it changes nothing
    assert f"nodes_to_exclude={[CONCAT, MUL]!r}" in hint and "verified" in hint, hint
    assert f"{[CONCAT]!r} alone was not enough" in hint, hint
