"""PTQ checkpoints in the AWML layout: save/load round trip, multi-element amax, device moves, clear misfits."""

from __future__ import annotations

import pytest
import torch

from cp_debug.errors import CheckpointError
from cp_debug.recipes.centerpoint.ptq_checkpoint import build_fakequant_model, load_ptq_checkpoint
from cp_debug.quant.ptq_checkpoint import save_ptq_checkpoint


def _head(model, spatial):
    from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs

    return head_outputs(model, spatial)


def test_checkpoint_has_the_awml_layout(tiny_ptq, tmp_path):
    path = save_ptq_checkpoint(tiny_ptq.model, tmp_path / "ptq.pth", meta={"note": "test"})
    obj = torch.load(path, map_location="cpu", weights_only=True)
    sd = obj["state_dict"]
    amax = [k for k in sd if k.endswith("._amax")]
    assert len(amax) == 2 * len(tiny_ptq.plan.layers) == 58  # 29 convs: all but pts_neck.deblocks.{0,1,2}.0
    assert not any(k.startswith("pts_neck.deblocks") and k.endswith("_amax") for k in sd)
    w = sd["pts_backbone.blocks.1.3._weight_quantizer._amax"]
    assert w.shape == (128, 1, 1, 1) and w.device.type == "cpu"
    assert sd["pts_backbone.blocks.1.3._input_quantizer._amax"].shape == ()
    assert "pts_backbone.blocks.1.3.bias" in sd and "pts_backbone.blocks.1.4.running_mean" not in sd
    assert obj["meta"]["note"] == "test" and obj["meta"]["preset"] == "tiny"


def test_round_trip_gives_the_same_fake_quant_model(tiny_cfg, tiny_ptq, tiny_spatial, tmp_path):
    path = save_ptq_checkpoint(tiny_ptq.model, tmp_path / "ptq.pth")
    state = load_ptq_checkpoint(path, tiny_cfg)
    a = state.amax["pts_bbox_head.shared_conv.conv"]
    assert a.per_channel and a.weight.numel() == 64 and a.weight_axis == 0  # multi-element, never .item()
    model = build_fakequant_model(tiny_cfg, state)
    got, ref = _head(model, tiny_spatial[0]), _head(tiny_ptq.model, tiny_spatial[0])
    for name in ref:
        assert (got[name] == ref[name]).all(), name


def _cuda_tagged_save(obj, path):
    """torch.save as if every tensor lived on cuda:0 (no CUDA here): the storages are tagged 'cuda:0'."""
    from torch import serialization

    def tag(storage):
        return "cuda:0"

    serialization.register_package(0, tag, lambda obj, location: None)
    try:
        torch.save(obj, path)
    finally:
        serialization._package_registry[:] = [e for e in serialization._package_registry if e[1] is not tag]


def test_amax_saved_on_cuda_loads_on_cpu(tiny_cfg, tiny_ptq, tmp_path):
    sd = {k: v.clone() for k, v in tiny_ptq.model.state_dict().items()}
    path = tmp_path / "cuda.pth"
    _cuda_tagged_save({"state_dict": sd, "meta": {}}, path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # what a loader without map_location meets
    state = load_ptq_checkpoint(path, tiny_cfg)
    assert all(a.weight.device.type == "cpu" and a.input.device.type == "cpu" for a in state.amax.values())
    assert len(state.amax) == 29


def test_meta_device_amax_is_refused_in_one_line(tiny_cfg, tiny_ptq):
    sd = dict(tiny_ptq.model.state_dict())
    key = "pts_backbone.blocks.0.0._input_quantizer._amax"
    sd[key] = torch.empty((), device="meta")
    with pytest.raises(CheckpointError) as err:
        load_ptq_checkpoint({"state_dict": sd}, tiny_cfg)
    assert key in str(err.value) and "meta" in str(err.value) and "\n" not in str(err.value)


def test_amax_of_the_wrong_size_names_module_and_shapes(tiny_cfg, tiny_ptq):
    sd = dict(tiny_ptq.model.state_dict())
    sd["pts_backbone.blocks.2.0._weight_quantizer._amax"] = torch.ones(128, 1, 1, 1)  # the conv has 256 outputs
    with pytest.raises(CheckpointError) as err:
        load_ptq_checkpoint({"state_dict": sd}, tiny_cfg)
    msg = str(err.value)
    assert "pts_backbone.blocks.2.0" in msg and "[128, 1, 1, 1]" in msg and "256" in msg and "\n" not in msg


def test_per_tensor_and_convtranspose_amax_load(tiny_cfg, tiny_ptq):
    """AWML's variant: the ConvTranspose2d quantized with a scalar weight amax; and a per-channel [1, C, 1, 1]."""
    sd = dict(tiny_ptq.model.state_dict())
    sd["pts_neck.deblocks.2.0._input_quantizer._amax"] = torch.tensor(3.0)
    sd["pts_neck.deblocks.2.0._weight_quantizer._amax"] = torch.tensor(0.5)
    state = load_ptq_checkpoint({"state_dict": sd}, tiny_cfg)
    a = state.amax["pts_neck.deblocks.2.0"]
    assert a.kind == "ConvTranspose2d" and not a.per_channel and a.weight.shape == ()
    sd["pts_neck.deblocks.2.0._weight_quantizer._amax"] = torch.full((128,), 0.5)
    b = load_ptq_checkpoint({"state_dict": sd}, tiny_cfg).amax["pts_neck.deblocks.2.0"]
    assert b.weight_axis == 1 and b.weight.shape == (1, 128, 1, 1)
    model = build_fakequant_model(tiny_cfg, load_ptq_checkpoint({"state_dict": sd}, tiny_cfg))
    assert model.pts_neck.deblocks[2][0]._weight_quantizer.axis == 1


def test_unfused_checkpoint_is_refused(tiny_cfg, tiny_fp32):
    with pytest.raises(CheckpointError, match="unfused"):
        load_ptq_checkpoint({"state_dict": tiny_fp32.state_dict()}, tiny_cfg)
