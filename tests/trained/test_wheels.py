"""Trained weights in the tests (issue 115, item 6): silero-vad's own ONNX file, as its wheel ships it, judged at its
decision (speech per 32 ms frame), with the right answers of `benchmarks/trained_corpus.py` (found by intervention,
without cp_debug; stored in tests/data/trained_corpus.json) checked again here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ANSWERS = Path(__file__).resolve().parents[1] / "data" / "trained_corpus.json"


@pytest.fixture(scope="module")
def vad():
    from tests.trained.corpus import SileroVad, run_of

    return run_of(SileroVad(), "silero-vad")


def test_the_wheels_file_runs_as_its_taken_branch(vad):
    import onnx
    import onnxruntime as ort

    from tests.trained.corpus import wheel_file

    spec, model, feeds, ref = vad
    whole = ort.InferenceSession(str(wheel_file("silero-vad", "silero_vad/data/silero_vad.onnx")))
    ops = [n.op_type for n in model.graph.node]
    assert "If" not in ops and ops.count("LSTMCell") + ops.count("LSTM") >= 1 and ops.count("Conv") >= 5
    for f in feeds[14:20]:  # the onset of speech: the inlined graph is the file's computation there
        np.testing.assert_array_equal(whole.run(None, f)[0], ort.InferenceSession(
            model.SerializeToString()).run(None, f)[0])
    assert sum(ref) > len(ref) // 2 and not any(ref[:10])  # the vowel is speech, the room noise before it is not
    del onnx


def test_int8s_right_answer_by_intervention(vad):
    """ORT's default INT8 moves most of the frames' decisions; quantizing everything but encoder.3's conv brings
    them all back (and that alone does, of every node it quantizes: the stored answer)."""
    from tests.trained.corpus import int8, session

    spec, model, feeds, ref = vad
    stored = json.loads(ANSWERS.read_text())["silero-vad/int8"]
    assert not stored["healthy"] and stored["restoring"], stored
    calib = feeds[:: max(1, len(feeds) // 8)]
    moved = sum(a != b for a, b in zip(ref, spec.decisions(session(int8(model, calib)), feeds)))
    assert moved >= len(ref) // 4, moved
    kept = spec.decisions(session(int8(model, calib, stored["restoring"][:1])), feeds)
    assert kept == ref
    assert json.loads(ANSWERS.read_text())["silero-vad/fp16"]["healthy"]
