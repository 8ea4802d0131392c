"""The layer that alone breaks a decision (issue 115: "every broken candidate flagged with the layer (or tensor) that
alone breaks its decision"): PaddleOCR's PP-OCRv4 recogniser (rapidocr-onnxruntime's file) in ONNX Runtime's INT8
(`quantize_static`, its defaults, as users make it) loses its spaces on all four printed lines, and no node left out
of INT8 alone brings them back (the stored answer), nor the top-ranked ones together: the error is spread. Before,
the root `conv2d_203.tmp_0` was "confirmed by replacing its tensor" (which hides every error that flowed into it);
now the ranked layers, most first, are also run alone in INT8 (every other node left out of the file's
quantization) and the first that breaks the outputs is named — checked here without cp_debug: that node alone
quantized (ONNX Runtime's `nodes_to_exclude` holding every other one) moves the lines read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # two quantizations of the recogniser and a bisect of it (~60 s on 2 cores)


def test_the_layer_that_alone_breaks_the_text_is_named(tmp_path):
    import onnx

    from tests.trained.corpus import RapidOcrRec, int8, run_of, session, touched

    spec, model, feeds, ref = run_of(RapidOcrRec(), "rapidocr-onnxruntime", "the README's test command installs it "
                                     "--no-deps")
    calib = feeds[:: max(1, len(feeds) // 8)]
    cand = int8(model, calib)
    assert spec.decisions(session(cand), feeds) != ref
    (tmp_path / "cand").mkdir()
    onnx.save(model, tmp_path / "model.onnx")
    onnx.save(cand, tmp_path / "cand" / "model.onnx")
    np.savez(tmp_path / "x.npz", **feeds[0])
    label = f"ort@{tmp_path / 'cand'}"
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,{label}", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"][label]
    found = cause["intervention"]
    assert not found["confirmed"] and found["alone_breaks"] == cause["probe"], found
    assert f"{cause['probe']} alone in INT8 (every other node left out of INT8) breaks them alone" in cause["hint"]
    alone = next(t for t in found["tried"] if t["alone"] and t["candidate"] == cause["probe"])
    assert not alone["back"] and alone["output_error_after"]["decisions_flipped"] > 0, alone

    node = next(n.name for n in model.graph.node if cause["probe"] in n.output)  # the right answer, without cp_debug
    rest = [n for n in touched("int8", model, cand) if n != node]
    assert spec.decisions(session(int8(model, calib, rest)), feeds) != ref, node
