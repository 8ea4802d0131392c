"""A fix whose set is every compute node of the model says it converts none (fix/module.py `unconverted`).

langid 1.1.6's naive Bayes (tests/data/trained/langid_slice.npz: 701 of its features, 97 languages) has one MatMul.
Its built-in INT8 moves a Softmax's probabilities beyond INT8's budget on some sentences (the languages kept), and
`fix` left that MatMul out: "1 node(s) left out of INT8 (1-minimal)", a model_int8.onnx computing in FP32, said as a
fix. The set is now said for what it is: no INT8 conversion of this model holds this budget on these samples."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.cli_run import cpdebug
from tests.trained.test_unnamed_user_file import DATA, _model


def test_a_set_of_every_compute_node_is_said_to_convert_none(tmp_path):
    d = np.load(DATA)
    onnx.save(_model(d), tmp_path / "langid.onnx")
    (tmp_path / "texts").mkdir()
    for i, row in enumerate(d["texts"].astype(np.float32)):
        np.savez(tmp_path / "texts" / f"t{i:02d}.npz", fv=row[None])
    np.savez(tmp_path / "calib.npz", fv=d["calib"].astype(np.float32))
    proc = cpdebug("fix", "--onnx", tmp_path / "langid.onnx", "-b", "ort-cpu-int8", "--calib", tmp_path / "calib.npz",
                   "--inputs", tmp_path / "texts", "--metric", "top1", "--out", tmp_path / "fix")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "fix" / "fix.json").read_text())
    assert doc["set"]["nodes_to_exclude"] == ["pdc"], doc["set"]  # the only MatMul: unnamed, called by its output
    text = " ".join(proc.stdout.split())
    assert "note: the set is every compute node of the model (1 Conv / Gemm / MatMul) left out of INT8" in text, text
    assert any("no INT8 conversion of this model holds" in n for n in doc["notes"]), doc["notes"]
    assert "Note: the set is every compute node of the model" in (tmp_path / "fix" / "README.md").read_text()


def test_a_set_that_leaves_a_compute_node_converted_says_nothing():
    from onnx import helper

    from cp_debug.fix.module import unconverted

    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="a"),
                           helper.make_node("MatMul", ["y", "w"], ["z"], name="b")], "two", [], [])
    model = helper.make_model(g)
    assert unconverted(model, ["a"], "int8") == ()
    assert "kept in FP32" in unconverted(model, ["a", "b"], "fp16")[0]
