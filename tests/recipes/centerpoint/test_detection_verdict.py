"""The detection verdict at the end of a CenterPoint bisect: real head maps decoded and matched box to box."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def head_and_verdict():
    import torch

    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.models.centerpoint.model import HEAD_OUTPUTS, BackboneNeckHeadStage
    from cp_debug.recipes.centerpoint.detection_verdict import detection_verdict
    from cp_debug.models.centerpoint.source import load_model

    cfg = get_preset("tiny")
    model = load_model("tiny", None, 0).model.eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, cfg.pillar_channels, *cfg.grid_size[::-1]))
                         .astype(np.float32))
    with torch.no_grad():
        maps = BackboneNeckHeadStage(model)(x)
    return {n: m.numpy() for n, m in zip(HEAD_OUTPUTS, maps)}, detection_verdict(cfg)


def test_same_maps_change_no_box(head_and_verdict):
    head, verdict = head_and_verdict
    v = verdict(head, {k: a.copy() for k, a in head.items()})
    assert v.reference_boxes > 0 and v.matched == v.reference_boxes and v.lost == v.added == 0
    assert not v.changed and v.summary.startswith("no box changed")
    assert {"changed", "summary"} <= set(v.to_json()) and v.to_json()["matched"] == v.matched


def test_logits_read_without_sigmoid_change_the_boxes(head_and_verdict):
    head, verdict = head_and_verdict
    cand = {k: a.copy() for k, a in head.items()}
    cand["heatmap"] = cand["heatmap"] - 8.0  # every score far lower: boxes fall under the threshold
    v = verdict(head, cand)
    assert v.changed and v.lost > 0 and v.matched < v.reference_boxes
    cand = {k: a.copy() for k, a in head.items()}
    cand["reg"] = cand["reg"] + 0.5  # every centre moved half a cell
    v = verdict(head, cand)
    assert v.changed and v.max_centre_shift_m > 0.01 and "max centre shift" in v.summary


def test_the_verdict_survives_a_saved_report(tmp_path):
    from cp_debug.bisect.result import BisectReport, CandidateResult

    det = {"matched": 3, "changed": False, "summary": "no box changed on this scan (3 matched, …)"}
    rep = BisectReport("torch", [CandidateResult("ort", "ort-cpu-fp32", [], detections=det)], [])
    again = BisectReport.from_json(rep.to_json())
    assert again.candidates[0].detections == det
