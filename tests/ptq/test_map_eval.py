"""INT8 mAP with the trained demo weights: the devkit's mAP per lane, a mAP-judged exclusion search.

The weights run on the tiny preset's range (same modules and keys as demo; a quarter of the pixels) with the demo's
0.32 m pillars (tiny's own are 0.64 m: the weights were trained on 0.32), on a held-out scene, to keep the test fast."""

from __future__ import annotations

import pytest

HOSTILE = "pts_bbox_head.task_heads.0.heatmap.0.conv"


@pytest.fixture(scope="module")
def demo_eval():
    from cp_debug.recipes.centerpoint.ptq.map_eval import map_scenes
    from cp_debug.recipes.centerpoint.ptq.quantize import quantize_centerpoint
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.recipes.centerpoint.ptq.sensitivity import Evaluator
    from cp_debug.models.centerpoint.source import load_model

    from cp_debug.models.centerpoint.source import shipped_checkpoint

    weights = shipped_checkpoint("demo")
    if weights is None:
        pytest.skip("no shipped trained demo weights in this checkout")
    from tests.pillars032 import TINY_032

    loaded = load_model(TINY_032, weights)
    cfg = loaded.cfg
    run = quantize_centerpoint(loaded.model, cfg, points_of(calibration(cfg, 1), cfg), 1, method="percentile")
    scenes = map_scenes(cfg, run.fused_fp32, 1)
    q = run.model.get_submodule(HOSTILE)._input_quantizer
    q.set_amax(q.amax * 200)  # most of the heatmap branch's input rounds to zero
    # The rel. RMSE each search step also measures (recorded, not what this search is judged on) runs on a quarter of
    # the scene's stage input (its first 80 x 80 cells; the stage is convolutional): its own pass per step is then a
    # quarter of a 160 x 160 one. mAP is judged on the whole scene.
    corner = tuple(s[..., :80, :80].contiguous() for s in scenes.spatial)
    return cfg, run, scenes, Evaluator(run.model, run.fused_fp32, corner, scenes, cfg)


def test_map_table_lanes(demo_eval):
    from cp_debug.recipes.centerpoint.ptq.map_eval import map_table

    cfg, run, scenes, _ = demo_eval
    table = map_table(cfg, run.fused_fp32, run.model, scenes)
    assert table.scenes == 1 and table.get("fp32").mean_ap > 0.5  # the trained weights detect
    assert table.get("fp32").drop == 0
    fq = table.get("torch-fakequant")
    assert fq.drop == pytest.approx(table.get("fp32").mean_ap - fq.mean_ap)
    assert table.to_json()["torch-fakequant"] == {"mAP": fq.mean_ap, "NDS": fq.nds, "drop": fq.drop}


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_map_judged_exclusion_search(demo_eval):
    from cp_debug.recipes.centerpoint.ptq.sensitivity import exclusion_search

    _, _, _, ev = demo_eval
    assert ev.map_drop([]) == 0
    hostile_drop = ev.map_drop([HOSTILE])
    rest = [n for n in ev.layers if n != HOSTILE]
    base = ev.map_drop(rest)
    assert hostile_drop > 0.2 and hostile_drop > base + 0.1
    limit = max(base, 0.0) + 0.05  # the rest in INT8 passes; the hostile layer in INT8 does not
    found = exclusion_search(ev, [HOSTILE, rest[0], rest[-1]], max_map_drop=limit)
    assert found.status == "found" and found.fp32 == (HOSTILE,)
    assert all(s.figures.map_drop is not None for s in found.steps)
