"""Sensitivity ranks a deliberately broken layer first; the exclusion search returns a 1-minimal FP32 set."""

from __future__ import annotations

import copy

import pytest

from cp_debug.recipes.centerpoint.ptq.sensitivity import Evaluator, exclusion_search, layer_sensitivity

HOSTILE = ("pts_backbone.blocks.1.6", "pts_bbox_head.shared_conv.conv")


def _centre(spatial, stride: int = 4):
    """The central half of a [1, C, H, W] canvas in each axis, rounded down to a multiple of `stride`."""
    h, w = spatial.shape[-2:]
    ch, cw = (h // 2) // stride * stride, (w // 2) // stride * stride
    y, x = (h - ch) // 2, (w - cw) // 2
    return spatial[:, :, y:y + ch, x:x + cw].contiguous()


@pytest.fixture(scope="module")
def hostile(tiny_ptq, tiny_spatial):
    """The calibrated tiny model with two layers made hostile: input amax 40x too large (most codes 0).
    The stage is fully convolutional: the central half of the canvas in each axis (20 x 20 of tiny's 40 x 40 cells,
    +-6.4 m around the sensor) keeps the runs fast; a multiple of the backbone's total stride (4), as the neck needs."""
    model = copy.deepcopy(tiny_ptq.model)
    crop = [_centre(s) for s in tiny_spatial]
    clean = Evaluator(tiny_ptq.model, tiny_ptq.fused_fp32, crop)
    base = max(clean.errors(clean.layers).values())
    for name in HOSTILE:
        q = model.get_submodule(name)._input_quantizer
        q.set_amax(q.amax * 40)
    ev = Evaluator(model, tiny_ptq.fused_fp32, crop)
    return ev, base, layer_sensitivity(ev)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_hostile_layers_rank_first(hostile):
    _, _, result = hostile
    assert len(result.rows) == 29
    assert {r.layer for r in result.rows[:2]} == set(HOSTILE)
    assert result.rows[1].rel_rmse > 3 * result.rows[2].rel_rmse
    frame = result.to_frame()
    assert list(frame["layer"][:2]) == [r.layer for r in result.rows[:2]] and "heatmap" in frame


def test_exclusion_search_is_one_minimal(hostile):
    ev, base, result = hostile
    ranked = [r.layer for r in result.rows][:6]
    tol = 2.0 * base  # the clean all-INT8 model passes; each hostile layer alone must not
    found = exclusion_search(ev, ranked, tol)
    assert found.status == "found"
    assert set(found.fp32) == set(HOSTILE)
    worst = lambda fp32: max(ev.errors([n for n in ev.layers if n not in fp32]).values())  # noqa: E731
    assert worst(found.fp32) <= tol  # the set passes...
    for name in found.fp32:  # ...and putting any one of its layers back into INT8 fails
        assert worst(set(found.fp32) - {name}) > tol
    assert found.steps[0].experiment == () and not found.steps[0].passed
    assert found.exclude_int8_option().startswith("--exclude-int8 ")


class _OracleEvaluator:
    """An Evaluator without a model: l3 and l7 in INT8 hurt (each adds 0.5 to heatmap's error, l7 0.1 to reg)."""

    map_scenes = None
    layers = tuple(f"l{i}" for i in range(10))

    def errors(self, quantized):
        bad = {"l3", "l7"} & set(quantized)
        return {"heatmap": 0.01 + 0.5 * len(bad), "reg": 0.02 + 0.1 * ("l7" in bad)}


def test_exclusion_search_steps_are_those_it_always_gave():
    """Every run, in order (recorded from the search before it ran on the shared driver); on_step sees each."""
    seen = []
    found = exclusion_search(_OracleEvaluator(), ["l7", "l0", "l3", "l1", "l5", "l2"], 0.05, on_step=seen.append)
    assert found.status == "found" and found.fp32 == ("l7", "l3") and list(found.steps) == seen
    hm, reg = "heatmap", "reg"
    assert [(s.experiment, s.phase, s.passed, round(s.figures.rel_rmse, 6), s.figures.worst_output, s.figures.map_drop)
            for s in found.steps] == [
        ((), "none", False, 1.01, hm, None), (("l7", "l0", "l3", "l1", "l5", "l2"), "all", True, 0.02, reg, None),
        (("l7", "l0", "l3"), "prefix", True, 0.02, reg, None), (("l7",), "prefix", False, 0.51, hm, None),
        (("l7", "l0"), "prefix", False, 0.51, hm, None), (("l0", "l3"), "minimize", False, 0.51, hm, None),
        (("l7", "l3"), "minimize", True, 0.02, reg, None), (("l3",), "minimize", False, 0.51, hm, None)]
    assert list(found.to_json()["steps"][0]) == ["fp32", "phase", "passed", "rel_rmse", "worst_output", "map_drop"]
