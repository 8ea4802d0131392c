"""A constant as a candidate (issue 115, item 1: "tensors are candidates too … a constant"; bisect/cures/constants.py):
a user's Q/DQ file (ONNX Runtime's `quantize_static`, per tensor, of tests/bisect/int8_proposals.py's scorer) whose
one constant is not the reference's: `trunk.2`'s weight scale ×4 in the file (a file from other weights). Before,
the conv's output tensor replaced by the reference's was the confirmation ("its tensor replaced by the reference's":
whatever flowed into it, hidden); now the constant the file holds off the reference's is the candidate, replaced
alone by the reference's value, and named where that brings the outputs back.

The right answer without cp_debug, with plain ONNX Runtime sessions: the planted file's scores are far from the
reference's; the same file with that one scale put back (÷4) gives the healthy file's scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, a quantization and a bisect (~8 s idle)

SCALE = "trunk.2.weight_scale"


def _files(tmp_path: Path):
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from tests.bisect.exported import written
    from tests.bisect.int8_proposals import build

    x, frames = written(build, tmp_path / "model.onnx", "scores")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"x": f} for f in frames)

        def get_next(self):
            return next(self.it, None)

    (tmp_path / "q").mkdir()
    quantize_static(str(tmp_path / "model.onnx"), str(tmp_path / "q" / "model.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ)
    m = onnx.load(tmp_path / "q" / "model.onnx")
    init = next(i for i in m.graph.initializer if i.name == SCALE)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 4, SCALE))  # the plant
    (tmp_path / "planted").mkdir()
    onnx.save(m, tmp_path / "planted" / "model.onnx")
    np.savez(tmp_path / "x.npz", x=x)
    return x


def _scores(path_or_model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_the_file_s_constant_off_the_reference_s_is_the_root_confirmed(tmp_path):
    from onnx import numpy_helper

    x = _files(tmp_path)
    ref, healthy = _scores(tmp_path / "model.onnx", x), _scores(tmp_path / "q" / "model.onnx", x)
    planted = _scores(tmp_path / "planted" / "model.onnx", x)
    m = onnx.load(tmp_path / "planted" / "model.onnx")  # the right answer: that one constant put back
    init = next(i for i in m.graph.initializer if i.name == SCALE)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) / 4, SCALE))
    assert np.abs(planted - ref).max() > 0.05 and np.abs(_scores(m, x) - healthy).max() < 1e-6

    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'planted'}", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{tmp_path / 'planted'}"]
    found = cause["intervention"]
    cure = next(t for t in found["tried"] if t["back"])
    assert cure["how"] == ["its constant replaced by the reference's"], found
    assert cure["tensors"] == ["trunk.2.weight_quantized"] and cure["nodes"] == ["/trunk/trunk.2/Conv"], cure
    assert found["confirmed"] and cause["probe"] == found["probe"] == cure["candidate"], cause
    assert "the constant 'trunk.2.weight_quantized' of Conv '/trunk/trunk.2/Conv' replaced by the reference's value" \
        in cause["hint"] and "brings the outputs back" in cause["hint"], cause["hint"]
