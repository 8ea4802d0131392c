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


def test_a_converters_clamp_is_counted_at_its_bound_not_at_float16s_range(tmp_path):
    """natasha's syntax parser (docs/trained-models.md, fourteenth stop): a running variance of 1.18e5 in 3 of 128
    elements, clamped by the converter at 1e4 in 76 — the hint counted the 3 beyond 65504 only."""
    import onnx
    from onnx import numpy_helper
    from onnxconverter_common import float16

    model, inputs = write(tmp_path)
    m = onnx.load(model)
    var = next(i for i in m.graph.initializer if i.name == "var")
    values = numpy_helper.to_array(var).copy()
    values[[5, 6]] = [3e4, 2e4]  # within float16's range, beyond the converter's 1e4
    var.CopyFrom(numpy_helper.from_array(values, "var"))
    onnx.save(m, model)
    (tmp_path / "user").mkdir()
    onnx.save(float16.convert_float_to_float16(m, keep_io_types=True), tmp_path / "user" / "bn.onnx")
    proc = cpdebug("bisect", "--onnx", model, "--inputs", inputs, "-b", f"ort-cpu,ort@{tmp_path / 'user'}", "--json",
                   tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    hint = report["root_cause"][report["candidates"][0]]["hint"]
    assert "(1 element(s))" in hint, hint  # beyond float16's range: 9.79e7 alone
    assert "clamped to 1e+04 (its converter's bound), 3 of its 8 element(s) beyond that bound" in hint, hint
