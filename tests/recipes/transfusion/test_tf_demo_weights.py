"""The shipped TransFusion-L demo checkpoint (cp_debug/models/transfusion/weights/, trained on the synthetic scenes by
benchmarks/train_transfusion_demo.sh on an H100: 1200 steps x 16 scenes, held-out mAP 0.907 on 100 scenes) is the
transfusion-demo preset's default weights; --random-weights and a preset without shipped weights stay random."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cp_debug.recipes.transfusion.source import load_transfusion, shipped_checkpoint  # noqa: E402


def test_the_demo_preset_loads_its_trained_weights_by_default():
    path = shipped_checkpoint("transfusion-demo")
    assert path is not None and path.stat().st_size > 1_000_000
    trained = load_transfusion("transfusion-demo")
    assert trained.weights.startswith("trained demo weights")
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    mine = trained.model.state_dict()
    assert list(state) == list(mine)  # AWML's keys, in AWML's order
    key = "pts_bbox_head.heatmap_head.1.bias"
    assert torch.equal(mine[key], state[key].to(mine[key].dtype))
    log = json.loads((path.parent / "transfusion_demo.train_log.json").read_text())
    assert log  # the training that made it, shipped beside it


def test_random_weights_and_presets_without_shipped_weights_are_random():
    assert load_transfusion("transfusion-demo", random_weights=True, seed=3).weights == "random (seed 3)"
    assert shipped_checkpoint("transfusion-tiny") is None
    assert load_transfusion("transfusion-tiny", seed=1).weights == "random (seed 1)"
