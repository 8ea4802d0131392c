"""Trained weights converted from Paddle (issue 115, item 6): rapidocr-onnxruntime's PP-OCRv4 text detector as its
wheel ships it (paddle2onnx: BatchNorm statistics as Constant nodes), judged at its text boxes. Its FP16 (made as
users make it, onnxconverter-common) loses them to one BatchNorm whose running variance (9.79e7) is beyond float16's
range; keeping that node alone in FP32 — with its own constants — brings every box back (the stored answer of
`benchmarks/trained_corpus.py`, found without cp_debug)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ANSWERS = Path(__file__).resolve().parents[1] / "data" / "trained_corpus.json"


@pytest.fixture(scope="module")
def det():
    from tests.trained.corpus import RapidOcrDet, run_of

    return run_of(RapidOcrDet(), "rapidocr-onnxruntime", "the README's test command installs it --no-deps")


def test_the_detectors_fp16_answer_by_intervention(det):
    from tests.trained.corpus import fp16, session

    spec, model, feeds, ref = det
    assert all(len(boxes) == 3 for boxes in ref)  # three printed lines, three boxes each page
    stored = json.loads(ANSWERS.read_text())["rapidocr-det/fp16"]
    assert not stored["healthy"] and stored["restoring"] == ["p2o.BatchNormalization.1"], stored
    assert spec.decisions(session(fp16(model)), feeds) != ref  # the boxes grow: the background's score ×200
    assert spec.decisions(session(fp16(model, stored["restoring"])), feeds) == ref
