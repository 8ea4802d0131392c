"""The shipped demo weights: the default of `load_model("demo")`, float16 on disk, float32 in the model, trained."""

from __future__ import annotations

import pytest
import torch

from cp_debug.data.frames import held_out
from cp_debug.errors import BadInputError
from cp_debug.pickles import read_checkpoint
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.model import build_model
from cp_debug.models.centerpoint.source import SHIPPED_WEIGHTS, load_model, shipped_checkpoint
from cp_debug.recipes.catalog import detector
from cp_debug.train.validate import validate

TRAINED = "trained demo weights (synthetic scenes)"  # the label of the shipped demo checkpoint's weights


def _holds_the_shipped_weights(state: dict) -> None:
    """Every tensor of the shipped demo checkpoint is in `state`, bit for bit (float16 on disk, float32 here)."""
    raw = read_checkpoint(shipped_checkpoint("demo"))["state_dict"]
    assert set(state) == set(raw)
    for key, stored in raw.items():
        assert state[key].dtype == (torch.float32 if stored.is_floating_point() else stored.dtype), key
        assert torch.equal(state[key], stored.to(state[key].dtype)), key


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_demo_default_is_the_shipped_checkpoint(demo):
    path = shipped_checkpoint("demo")
    assert path is not None and path.name == SHIPPED_WEIGHTS["demo"] and path.stat().st_size <= 20 * 2**20
    assert demo.weights == TRAINED
    raw = read_checkpoint(path)
    assert raw["meta"]["stored_dtype"] == "float16" and "synthetic" in raw["meta"]["note"]
    key = "pts_bbox_head.task_heads.0.heatmap.1.weight"
    assert raw["state_dict"][key].dtype == torch.float16
    assert torch.equal(demo.model.state_dict()[key], raw["state_dict"][key].float())
    _holds_the_shipped_weights(demo.model.state_dict())


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_random_weights_and_other_presets_keep_the_random_initialisation():
    rnd = load_model("demo", seed=3, random_weights=True)
    assert rnd.weights == "random (seed 3)"
    ref = build_model(get_preset("demo"), seed=3)
    for k, v in ref.state_dict().items():
        assert torch.equal(rnd.model.state_dict()[k], v), k
    assert shipped_checkpoint("tiny") is None and load_model("tiny").weights == "random (seed 0)"
    with pytest.raises(BadInputError, match="not both"):
        load_model("demo", checkpoint=shipped_checkpoint("demo"), random_weights=True)


def test_shipped_weights_detect_held_out_scenes(demo):
    # the first held-out scene (never a training seed): mAP 0.98 here, 0.93 over the first three; random weights
    # detect nothing. One scene is a forward of the 320 x 320 grid (about 4 CPU s), not three.
    result = validate(demo.model, demo.cfg, held_out(1), "cpu", detector().detect)
    assert result.mean_ap >= 0.5, result.to_json()


def test_demo_bisect_subject_uses_the_trained_default():
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject("demo")
    assert subject.facts.weights == TRAINED and subject.facts.random_weights is False
    _holds_the_shipped_weights({k: v for stage in subject.stages for k, v in stage.module.state_dict().items()})
