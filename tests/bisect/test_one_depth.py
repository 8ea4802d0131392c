"""One depth for one fault (issue 117, item 3): a per-tensor INT8 file whose output.dense clips its outlier
channels, given as `--onnx` (every tensor probed) and as `--torch` (the default level probes the encoder's layers,
whose LayerNorm after the residual hides it): the same layer named, for the same reason, with the same verified
cure. The model within precision at its blocks' outputs probes nothing more (`look_inside.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bisect.outlier_bert import DATA, write
from tests.cli_run import cpdebug

pytestmark = pytest.mark.slow  # an export and a quantization, then two runs (≈ 20 CPU s); scheduled first (conftest)
HERE = Path(__file__).resolve().parent
CURE = "nodes_to_exclude=['/bert/encoder/layer.0/output/dense/MatMul']"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write(tmp_path_factory.mktemp("outlier_bert"))


def _bisect(tmp_path: Path, *args) -> tuple[int, dict]:
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", *args, "--json", out)
    assert out.is_file(), proc.stderr[-800:]
    return proc.returncode, json.loads(out.read_text())


@pytest.mark.parametrize("path", ["torch", "onnx"])
def test_the_outlier_is_named_at_its_layer_with_its_reason_and_cure_on_both_paths(tmp_path, files, path):
    fp32, int8 = files
    if path == "torch":
        args = ["--torch", f"{HERE / 'outlier_bert.py'}:build", "--backends", f"torch,ort@{int8}"]
    else:
        args = ["--onnx", fp32, "--inputs", DATA / "bert_inputs.npz", "--backends", f"ort,ort@{int8}"]
    code, report = _bisect(tmp_path, *args)
    cand = report["candidates"][0]
    rc = report["root_cause"][cand]
    assert code == 1, report.get("outcome_reasons")
    root = {"torch": "bert.encoder.layer.0.output.dense",
            "onnx": "/bert/encoder/layer.0/output/dense/MatMul_output_0"}[path]
    assert rc["probe"] == root, rc
    hint = rc["hint"] or ""
    # the reference's values pass the range's end by less than half a level (they round to it, as a value inside
    # does: no clip); what the outlier channels' range does is round the others to zero
    assert "rounds 99% of the reference's nonzero values to zero" in hint and "channels 0, 1" in hint, hint
    assert CURE in hint and "verified" in hint, hint
    if path == "torch":  # the default level's blocks, and the layers of the one it looked into
        probes = [r["probe"] for r in report["results"][cand]]
        assert "bert.encoder.layer.0" in probes and "bert.encoder.layer.1.output.dense" not in probes, probes
