"""Decisions at the application's level (issue 115, item 3) where a converter writes the output as an Identity of its
Softmax, as paddle2onnx writes PaddleOCR's orientation classifier (`save_infer_model/scale_0.tmp_1`): the argmax that
flips is a decision of the report. Before, the output's writer was the Identity, and no decision was read (rapidocr's
classifier in INT8: '0' at 0.788 → 0.227, `decisions` empty)."""

from __future__ import annotations

import json

import numpy as np

from tests.cli_run import cpdebug


def _classifier(w):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["softmax_0.tmp_0"], axis=-1, name="softmax"),
             helper.make_node("Identity", ["softmax_0.tmp_0"], ["save_infer_model/scale_0.tmp_1"], name="scale")]
    graph = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("save_infer_model/scale_0.tmp_1", TensorProto.FLOAT,
                                                             [1, 4])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_a_softmax_written_through_an_identity_is_read_at_its_argmax(tmp_path):
    import onnx

    w = np.eye(4, dtype=np.float32)
    onnx.save(_classifier(w), tmp_path / "cls.onnx")
    user = w.copy()
    user[0, 0] = 1.004  # class 0 overtakes class 1 (0.502 against 0.501)
    (tmp_path / "user").mkdir()
    onnx.save(_classifier(user), tmp_path / "user" / "cls.onnx")
    np.savez(tmp_path / "x.npz", x=np.array([[0.5, 0.501, 0.0, 0.0]], np.float32))
    cpdebug("bisect", "--onnx", tmp_path / "cls.onnx", "--inputs", tmp_path / "x.npz", "-b",
            f"ort-cpu,ort@{tmp_path / 'user'}", "--json", tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    label = report["candidates"][0]
    flips = report["decisions"][label]
    assert [(d["name"], d["rule"], d["flipped"]) for d in flips] == [("save_infer_model/scale_0.tmp_1", "argmax", 1)]
