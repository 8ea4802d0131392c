"""deepCR 0.3.1's cosmic-ray mask for ACS/WFC (tests/trained/deepcr.py; its ONNX export stored,
tests/data/trained/deepcr_acs_wfc.onnx), tried as a new user: a sparse map's decisions (docs/trained-models.md,
fourteenth stop).

The right answer, without cp_debug: ONNX Runtime's `quantize_static` (Q/DQ, its defaults, 24 exposures one at a time)
loses the mask — 119 of 262,144 pixels of 4 exposures flip (17–52 a frame, of 99–149 cosmic-ray pixels found), 69 of
them where the reference is more than 0.25 from 0.5: clear decisions, no near ties. Few among the map's
elements (0.045 %, under `decisions.SCATTERED`'s 0.1 %), many among what the map finds. Before, with no `--metric`,
cp_debug read them as "the map's near ties at its threshold, no decision of the map", the decision holding — a
broken mask passed as degraded by a layer's fault; with the flips read, the output pair's step (0.145) was said as
their mechanism where it spans the margins of 11 of the 119."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug
from tests.trained.deepcr import MODEL, frames, mask_metric
from tests.trained.made import quantize_row_by_row

pytestmark = pytest.mark.long  # a quantization of 24 exposures and a bisect with its interventions (~35 s)


def test_a_sparse_masks_clear_flips_are_a_decision_changed_not_its_near_ties(tmp_path):
    import onnxruntime as ort

    from cp_debug.bisect.findings.decisions import CLEAR, SCATTERED

    judged = frames(0, 4)
    (tmp_path / "q").mkdir()
    quantize_row_by_row(MODEL, tmp_path / "q" / "model.onnx", "x", frames(16, 24))

    def mask(path) -> np.ndarray:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": judged})[0]

    ref, got = mask(MODEL), mask(tmp_path / "q" / "model.onnx")
    flip = (ref > 0.5) != (got > 0.5)
    assert mask_metric({"mask": got}, {"mask": ref}) == 0.0  # by hand: every frame's mask moves (> 5 pixels)
    assert 0 < flip.sum() <= SCATTERED * flip.size  # few among the map's elements …
    assert (np.abs(ref - 0.5)[flip] > CLEAR).sum() * 4 > flip.sum()  # … many of them clear decisions moved (69)
    np.savez(tmp_path / "x.npz", x=judged)
    label = f"ort@{tmp_path / 'q'}"
    proc = cpdebug("bisect", "--onnx", MODEL, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,{label}", "--json",
                   tmp_path / "r.json", "--quiet")
    rep = json.loads((tmp_path / "r.json").read_text())
    why = rep["outcome_reasons"][label]
    assert proc.returncode in (1, 4) and rep["outcomes"][label] in ("degraded", "diverged"), why
    assert why.startswith("the decision changes (no --metric declared: read at 0.5 / argmax): mask read at"), why
    assert "the decision holds" not in why and "near ties at its threshold" not in why, why
    d, = rep["decisions"][label]
    assert d["flipped"] == int(flip.sum()) and not d["scattered"] and d["clear"] * 4 > d["flipped"], d
    assert "no near ties" in d["summary"] and "a near tie broken by rounding" not in d["summary"], d["summary"]
    # the root: the first conv's (by hand, on 16 frames: alone in INT8 it flips 12,018 pixels, left out the best
    # single node); its reason no threshold step that explains a tenth of the flips (11 of 119 within the output
    # pair's step of 0.145: said as the mechanism before `threshold_step` asked for half)
    cause = rep["root_cause"][label]
    assert cause["probe"].startswith("/inc/conv/conv/"), cause
    assert "wider than the reference's distance to the threshold" not in cause["hint"], cause["hint"]
