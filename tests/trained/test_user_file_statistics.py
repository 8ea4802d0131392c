"""Issue 115, item 2, on a user's file: a BatchNorm's running variance beyond float16's range, in an FP16 file made
as its users make it (onnxconverter-common, which clamps the statistic to 1e4: no Inf to see in the file), given as
`ort@DIR` — said as a statistic out of range (the value the subject's graph holds), not "FP16 rounding". PaddleOCR's
PP-OCRv4 text detector (rapidocr's file, benchmarks/trained_corpus.py) was "FP16 rounding introduced by this layer
(local rel. error 52)" at its BatchNorm of running variance 9.79e7."""

from __future__ import annotations

import json

import numpy as np

from tests.bisect.fp16_statistics import write
from tests.cli_run import cpdebug


def test_a_user_files_clamped_running_variance_is_said_as_a_statistic_out_of_range(tmp_path):
    import onnx
    from onnx import numpy_helper
    from onnxconverter_common import float16

    model, inputs = write(tmp_path)
    half = float16.convert_float_to_float16(onnx.load(model), keep_io_types=True)
    var = next(numpy_helper.to_array(i) for i in half.graph.initializer if i.name == "var")
    assert var.dtype == np.float16 and float(var.max()) == 1e4  # clamped by the converter (its max_finite_val): finite
    (tmp_path / "user").mkdir()
    onnx.save(half, tmp_path / "user" / "bn.onnx")
    proc = cpdebug("bisect", "--onnx", model, "--inputs", inputs, "-b", f"ort-cpu,ort@{tmp_path / 'user'}", "--json",
                   tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    label = report["candidates"][0]
    assert proc.returncode == 1, report["outcome_reasons"]
    cause = report["root_cause"][label]
    assert cause["probe"] == "bn", cause
    hint = cause["hint"]
    assert hint.startswith("a statistic beyond float16's range at BatchNormalization 'bn1': its running variance"), hint
    assert "9.79e+07" in hint and "rounding introduced" not in hint, hint
    assert "the file holds it clamped to 1e+04" in hint, hint
