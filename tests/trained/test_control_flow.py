"""A valid file whose `If` branches hold an LSTM (silero-vad's layout) is bisected, not refused (issue 115, item 4):
the branch the sample takes is inlined, so the layers inside are probed; before, the lockstep's statically shaped
cut of the If made ONNX Runtime infer the branch not taken at the taken one's sizes and fail ("cannot load")."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.cli_run import cpdebug
from tests.trained.branchy import feed, if_lstm_model


def test_taken_branch_inlined_computes_the_same():
    import onnxruntime as ort

    from cp_debug.graph.branches import inline_taken_branches

    model, f = if_lstm_model(), feed()
    got = inline_taken_branches(model, f)
    assert [n.op_type for n in got.model.graph.node if n.op_type in ("If", "LSTM")] == ["LSTM"]
    assert got.taken == ("If_0: then_branch (5 nodes)",) and not got.kept
    whole = ort.InferenceSession(model.SerializeToString()).run(None, f)[0]
    inlined = ort.InferenceSession(got.model.SerializeToString()).run(None, f)[0]
    np.testing.assert_array_equal(whole, inlined)
    eight = inline_taken_branches(model, {**f, "sr": np.array(8000, np.int64)})  # the other sample, the other branch
    assert eight.taken == ("If_0: else_branch (5 nodes)",)


def test_if_with_lstm_is_bisected_not_refused(tmp_path):
    onnx.save(if_lstm_model(), tmp_path / "vad.onnx")
    np.savez(tmp_path / "frame.npz", **feed())
    res = cpdebug("bisect", "--onnx", tmp_path / "vad.onnx", "--inputs", tmp_path / "frame.npz",
                  "--backends", "ort-cpu,ort-cpu-fp16", "--json", tmp_path / "r.json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    text = json.dumps(report)
    assert '"k16_Y"' in text  # the LSTM's output inside the branch, a probe of its own
    assert "then_branch (5 nodes) inlined" in text
