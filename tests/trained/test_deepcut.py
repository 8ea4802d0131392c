"""pythainlp's DeepCut (tests/trained/deepcut.py, tried as a new user, tenth stop): a user's per-tensor
`quantize_static` file moves 21 of 325 word boundaries. Without cp_debug: no node left out alone brings them back;
of the Q/DQ pairs removed alone only the Concat's output pair does (one scale, a step of 7.46, over the embeddings,
|x| ≤ 6, and the conv branches' maxima, up to 1,640); `nodes_to_exclude=[the Concat]` changes nothing (its reader, the
BatchNorm's Mul, quantizes it), with the Mul 1 of 325 stays moved. cp_debug named the Concat's output, confirmed, and
advised the Concat alone, untried; now the cure is the quantizer's, tried (`cures/shared_scale.with_cure`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # three quantizations and a bisect with its intervention and its cure tried (~40 s)
HERE = Path(__file__).resolve().parent
P = "StatefulPartitionedCall/model/"
CONCAT, MUL = P + "concatenate/concat", P + "batch_normalization_1/batchnorm/mul_1"


def test_the_concat_s_cure_is_the_quantizer_s(tmp_path):
    import onnx
    import onnxruntime as ort

    from tests.trained.corpus import int8, needs
    from tests.trained.deepcut import THRESHOLD, calibration, judged, model_path

    needs("pythainlp", "pip install --no-deps pythainlp==5.4.0: its deepcut.onnx only")
    model = onnx.load(str(model_path()))
    x, calib = judged(), calibration()
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]

    def moved(m) -> int:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return int(np.sum((s.run(None, x)[0] > THRESHOLD) != (ref > THRESHOLD)))

    user = int8(model, calib, cache=tmp_path / "calib.cache")
    n = moved(user)
    assert n >= 10  # 21 of 325 here
    assert moved(int8(model, calib, keep=[CONCAT], cache=tmp_path / "calib.cache")) >= n - 1  # the Concat alone
    assert moved(int8(model, calib, keep=[CONCAT, MUL], cache=tmp_path / "calib.cache")) <= 2  # with its reader

    (tmp_path / "q").mkdir()
    onnx.save(user, tmp_path / "q" / "model.onnx")
    np.savez(tmp_path / "x.npz", **x)
    proc = cpdebug("bisect", "--onnx", model_path(), "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'q'}", "--metric", f"{HERE / 'deepcut.py'}:boundary_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = next(iter(json.loads((tmp_path / "r.json").read_text())["root_cause"].values()))
    assert cause["probe"] == CONCAT + ":0" and cause["confirmed"], cause
    hint = cause["hint"]
    assert "one per-tensor INT8 scale covers Concat" in hint, hint
    # before: "re-quantize with `nodes_to_exclude=['…/concat']`", untried — by hand it changes nothing
    assert f"nodes_to_exclude={[CONCAT, MUL]!r}" in hint and f"{[CONCAT]!r} alone was not enough" in hint, hint
