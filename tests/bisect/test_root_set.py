"""A root cause that is a set (issue 115, item 1): where no single candidate restored brings the outputs back, the
intervention searches the smallest set of the ranked candidates that does (added in rank order until they come
back, then each one dropped whose removal still brings them back: 1-minimal, `cures/search.KeepFp32Search`), names
it as the root and offers it as the cure verified at the outputs — the same set through either door: the built-in
INT8 candidate (`--exclude-int8`) and the same quantization as a user's Q/DQ file (`nodes_to_exclude`, tried on the
file with the set's Q/DQ pairs removed).

tests/bisect/int8_two_branches.py: two summed branches, each rounding most of its weights to zero at a per-channel
scale an outlier sets. The right answer without cp_debug, with ONNX Runtime's own quantizer: either conv in
`nodes_to_exclude` alone leaves the output's error large, both bring it back. Before, the intervention tried the
three ranked convs together (`all of them`, the stem's and the head's besides) and said "confirmed by intervention:
the set a, b, head"; the user's file, restored by tensors replaced (a set of those never tried), was "confirmed by
no intervention"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, three quantizations and a bisect of two candidates (~10 s idle)


def _model_and_feeds(tmp_path: Path):
    import onnx

    from tests.bisect.exported import written
    from tests.bisect.int8_two_branches import build

    x, frames = written(build, tmp_path / "model.onnx", "y")
    return onnx.load(tmp_path / "model.onnx"), x, [{"x": f} for f in frames]


def _error(model, x: np.ndarray, ref: np.ndarray) -> float:
    import onnxruntime as ort

    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def test_the_two_convs_are_the_root_cause_together_through_either_door(tmp_path):
    import onnxruntime as ort

    from cp_debug.precision.int8 import quantize_int8

    model, x, calib = _model_and_feeds(tmp_path)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # the right answer, without cp_debug: ONNX Runtime's quantizer with the convs in nodes_to_exclude
    err = {ex: _error(quantize_int8(model, calib, exclude_nodes=ex).model, x, ref)
           for ex in ((), ("/a/Conv",), ("/b/Conv",), ("/a/Conv", "/b/Conv"))}
    assert min(err[("/a/Conv",)], err[("/b/Conv",)]) > 0.3 and err[("/a/Conv", "/b/Conv")] < 0.05, err

    (tmp_path / "file").mkdir()
    import onnx

    onnx.save(quantize_int8(model, calib).model, tmp_path / "file" / "model.onnx")
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=np.concatenate([f["x"] for f in calib]))
    file = f"ort@{tmp_path / 'file'}"
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "calib.npz", "-b", f"ort-cpu,ort-cpu-int8,{file}", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    roots = json.loads((tmp_path / "r.json").read_text())["root_cause"]
    for label, cure in (("ort-cpu-int8", "--exclude-int8 /a/Conv,/b/Conv"),
                        (file, "re-quantize with `nodes_to_exclude=['/a/Conv', '/b/Conv']`")):
        cause = roots[label]
        found = cause["intervention"]
        assert found["confirmed"] and found["probe"] is None, (label, found)
        assert sorted(found["set"]) == ["/a/Conv_output_0", "/b/Conv_output_0"], (label, found)
        assert sorted(found["keep"]) == ["/a/Conv", "/b/Conv"] and found["how"] == "left out of INT8", found
        assert cause["probe"] in found["set"] and cause["confirmed"], cause
        assert "restored together: " in cause["hint"] and "no one of them alone does" in cause["hint"], cause["hint"]
        assert f"verified at the outputs: {cure}" in cause["hint"], cause["hint"]
        singles = [t for t in found["tried"] if not isinstance(t["candidate"], list)]
        assert {t["candidate"] for t in singles} >= {"/a/Conv_output_0", "/b/Conv_output_0"}, singles
        assert not any(t["back"] for t in singles), singles
        chosen = next(t for t in found["tried"] if sorted(t["nodes"]) == ["/a/Conv", "/b/Conv"])
        assert chosen["back"] and chosen["output_error_after"]["within"], chosen
