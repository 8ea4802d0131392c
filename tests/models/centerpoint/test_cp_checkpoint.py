from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict

import pytest
import torch

from cp_debug.errors import CheckpointError, CpDebugError
from cp_debug.models.centerpoint.checkpoint import load_checkpoint, presets_matching
from cp_debug.pickles import save_checkpoint
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.model import build_model


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(get_preset("tiny"), seed=3, init="mmdet3d")


def _fresh(name="tiny"):
    return build_model(get_preset(name), seed=99, init="mmdet3d")


def test_round_trip(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "ckpt.pth", meta={"note": "test"})
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "meta"} and raw["meta"]["preset"] == "tiny"
    model = _fresh()
    info = load_checkpoint(model, path)
    assert info.num_keys == 180 and info.meta["note"] == "test"
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_bare_state_dict_and_module_prefix(tiny_model):
    state = OrderedDict((f"module.{k}", v) for k, v in tiny_model.state_dict().items())
    model = _fresh()
    load_checkpoint(model, state)
    assert torch.equal(model.pts_backbone.blocks[0][0].weight, tiny_model.pts_backbone.blocks[0][0].weight)


def test_mmengine_objects_load_without_running_code(tmp_path, tiny_model, monkeypatch):
    """A real mmengine checkpoint holds mmengine objects (HistoryBuffer...) and could hold worse."""
    fake = types.ModuleType("mmengine_fake_logging")

    class HistoryBuffer:
        def __init__(self):
            self.values = [1.0, 2.0]

    HistoryBuffer.__module__ = fake.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    fake.HistoryBuffer = HistoryBuffer
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    Evil.__qualname__ = "Evil"
    Evil.__module__ = fake.__name__
    fake.Evil = Evil

    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    ckpt = {
        "meta": {"mmengine_version": "0.10.4", "epoch": 50},
        "state_dict": tiny_model.state_dict(),
        "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()}},
        "evil": Evil(),
    }
    path = tmp_path / "epoch_50.pth"
    torch.save(ckpt, path)
    monkeypatch.delitem(sys.modules, fake.__name__)
    model = _fresh()
    info = load_checkpoint(model, path)
    assert info.meta["epoch"] == 50
    assert not marker.exists()
    assert torch.equal(model.pts_neck.deblocks[2][0].weight, tiny_model.pts_neck.deblocks[2][0].weight)


def test_760_checkpoint_into_awml_base_names_the_right_preset():
    state = build_model(get_preset("awml-760"), seed=0, init="mmdet3d").state_dict()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_fresh("awml-base"), {"state_dict": state})
    msg = str(err.value)
    assert "wrong shape" in msg and "pts_neck.deblocks.0.0.weight" in msg and "awml-760" in msg
    assert "\n" not in msg


def test_j6gen2_checkpoint_into_base():
    state = build_model(get_preset("awml-j6gen2"), seed=0, init="mmdet3d").state_dict()
    model = _fresh("tiny")
    before = model.pts_voxel_encoder.pfn_layers[0].linear.weight.clone()
    with pytest.raises(CheckpointError, match="awml-j6gen2"):
        load_checkpoint(model, state)
    assert torch.equal(model.pts_voxel_encoder.pfn_layers[0].linear.weight, before)  # nothing half-loaded


def test_missing_and_unexpected_keys(tiny_model):
    state = dict(tiny_model.state_dict())
    del state["pts_bbox_head.task_heads.0.vel.1.bias"]
    state["pts_bbox_head.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_fresh(), state)
    msg = str(err.value)
    assert "missing pts_bbox_head.task_heads.0.vel.1.bias" in msg and "unexpected pts_bbox_head.extra.weight" in msg


def _fuse_layout(state, with_amax=True):
    """AWML PTQ layout: BN folded into the preceding conv (conv gains .bias, BN keys vanish, PFN BN1d stays)."""
    out = OrderedDict()
    keys = list(state)
    for k in keys:
        if k.startswith("pts_voxel_encoder"):
            out[k] = state[k]
    conv_bn = []
    for k in keys:
        if k.endswith(".running_mean") and not k.startswith("pts_voxel_encoder"):
            bn = k[: -len(".running_mean")]
            if bn.endswith(".bn"):
                conv = bn[: -len(".bn")] + ".conv"
            else:
                head, idx = bn.rsplit(".", 1)
                conv = f"{head}.{int(idx) - 1}"
            conv_bn.append((conv, bn))
    bns = {bn for _, bn in conv_bn}
    for k in keys:
        if k.startswith("pts_voxel_encoder") or k.rsplit(".", 1)[0] in bns:
            continue
        out[k] = state[k]
    for conv, bn in conv_bn:
        out[f"{conv}.bias"] = torch.zeros(state[f"{bn}.weight"].shape)
        if with_amax:
            out[f"{conv}._input_quantizer._amax"] = torch.tensor(1.0)
            out[f"{conv}._weight_quantizer._amax"] = torch.ones(state[f"{bn}.weight"].shape[0], 1, 1, 1)
    return out


def test_ptq_checkpoint_is_refused(tiny_model):
    ptq = _fuse_layout(tiny_model.state_dict())
    with pytest.raises(CheckpointError, match="PTQ") as err:
        load_checkpoint(_fresh(), {"state_dict": ptq})
    assert "amax" in str(err.value)
    with pytest.raises(CheckpointError, match="fused"):
        load_checkpoint(_fresh(), _fuse_layout(tiny_model.state_dict(), with_amax=False))


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(_fresh(), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(_fresh(), tmp_path / "nope.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CpDebugError, match="not a dict"):
        load_checkpoint(_fresh(), tmp_path / "list.pth")


def test_presets_matching_groups_shape_identical_presets(tiny_model):
    assert presets_matching(tiny_model.state_dict()) == ["awml-base", "demo", "tiny"]


def test_fuse_batchnorm_keeps_outputs_and_has_the_ptq_layout():
    from cp_debug.models.centerpoint.fused import fuse_batchnorm
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.models.centerpoint.pillar_encoder import get_input_features

    cfg = get_preset("tiny")
    model = build_model(cfg, seed=4)
    fused = fuse_batchnorm(model)
    sd = fused.state_dict()
    assert len(sd) == 76  # 12 PFN + 32 backbone + 6 neck + 2 shared conv + 24 task heads
    assert "pts_backbone.blocks.0.0.bias" in sd and "pts_backbone.blocks.0.1.weight" not in sd
    assert "pts_voxel_encoder.pfn_layers.0.norm.running_var" in sd
    assert "pts_bbox_head.shared_conv.conv.bias" in sd and "pts_neck.deblocks.2.0.bias" in sd
    assert "pts_backbone.blocks.0.0.bias" not in model.state_dict()  # the original is untouched
    pts = synthetic_scene(0, cfg).points[:, list(cfg.use_dim)]
    v = voxelize(pts, cfg)
    feats = get_input_features(v.voxels, v.num_points, v.coors, cfg)
    with torch.no_grad():
        a, b = model(feats, v.coors, 1), fused(feats, v.coors, 1)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-3)


def test_ptq_checkpoint_loads_into_the_fused_structure(tmp_path):
    from cp_debug.models.centerpoint.fused import build_fused_model, fuse_batchnorm, quantizable_layers

    cfg = get_preset("tiny")
    fused = fuse_batchnorm(build_model(cfg, seed=5))
    state = OrderedDict(fused.state_dict())
    convs = [n for n in quantizable_layers(fused) if not n.startswith("pts_backbone.blocks.0.")]
    assert len(convs) == 28  # AWML's recipe: every conv but the four of blocks.0 -> 56 Q/DQ pairs
    for name in convs:
        state[f"{name}._input_quantizer._amax"] = torch.tensor(6.0)
        state[f"{name}._weight_quantizer._amax"] = torch.ones(3, 1, 1, 1)
    assert len(state) == 132
    torch.save({"state_dict": state, "meta": {}}, tmp_path / "ptq.pth")
    target = build_fused_model(cfg)
    info = load_checkpoint(target, tmp_path / "ptq.pth")
    assert info.num_keys == 76 and len(info.quantizer_amax) == 56
    assert torch.equal(target.pts_backbone.blocks[1][0].bias, fused.pts_backbone.blocks[1][0].bias)
    # and the other way round: the unfused model refuses it, an unfused checkpoint does not fit the fused model
    with pytest.raises(CheckpointError, match="PTQ"):
        load_checkpoint(_fresh(), tmp_path / "ptq.pth")
    with pytest.raises(CheckpointError, match="unfused checkpoint"):
        load_checkpoint(build_fused_model(cfg), _fresh().state_dict())
    bad = dict(state)
    bad["pts_backbone.blocks.9.0._input_quantizer._amax"] = torch.tensor(1.0)
    with pytest.raises(CheckpointError, match="layers the model lacks"):
        load_checkpoint(build_fused_model(cfg), bad)
