"""ConvNeXt_PC and BackwardPillarFeatureNet against reference functions written from the mmpretrain / AWML
sources; AWML's state_dict keys; checkpoint round trip; ONNX export (LayerNormalization at opset 17) in ORT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cp_debug.models.centerpoint.checkpoint import load_checkpoint
from cp_debug.pickles import save_checkpoint
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.convnext_pc import ConvNeXt_PC
from cp_debug.models.centerpoint.model import build_model
from cp_debug.models.centerpoint.pillar_encoder import get_input_features

# convnextpc-demo's structure at a 64 x 64 grid: 5 stages, outputs at strides 4, 8, 16, heads at stride 4
SMALL = dict(point_cloud_range=(-10.24, -10.24, -3.0, 10.24, 10.24, 5.0), max_voxels=2000, name="convnextpc-small")


@pytest.fixture(scope="module")
def small_cfg():
    return get_preset("convnextpc-demo").with_(**SMALL)


# -- reference functions, from mmpretrain's ConvNeXtBlock / LayerNorm2d and AWML's ConvNeXt_PC -------------------
def ref_layernorm_channels(x, w, b, eps):
    """LayerNorm over dim 1 of (N, C, H, W): (x - E[x]) / sqrt(Var[x] + eps) * w + b, biased variance."""
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def ref_gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_block(x, sd, prefix, eps):
    c = x.shape[1]
    y = F.conv2d(x, sd[prefix + "depthwise_conv.weight"], sd[prefix + "depthwise_conv.bias"], padding=3, groups=c)
    y = ref_layernorm_channels(y, sd[prefix + "norm.weight"], sd[prefix + "norm.bias"], eps)
    y = torch.einsum("nchw,oc->nohw", y, sd[prefix + "pointwise_conv1.weight"]) + sd[
        prefix + "pointwise_conv1.bias"].view(1, -1, 1, 1)
    y = ref_gelu(y)
    y = torch.einsum("nchw,oc->nohw", y, sd[prefix + "pointwise_conv2.weight"]) + sd[
        prefix + "pointwise_conv2.bias"].view(1, -1, 1, 1)
    return x + y * sd[prefix + "gamma"].view(1, -1, 1, 1)


def ref_convnext_pc(x, sd, depths, out_indices, eps=1e-6, downsample_eps=1e-5):
    outs = []
    for i, depth in enumerate(depths):
        if i >= 1:  # first_downsample=1: LayerNorm2d (nn.LayerNorm's eps) then a 2x2 stride-2 conv
            p = f"downsample_layers.{i}."
            x = ref_layernorm_channels(x, sd[p + "0.weight"], sd[p + "0.bias"], downsample_eps)
            x = F.conv2d(x, sd[p + "1.weight"], sd[p + "1.bias"], stride=2)
        for j in range(depth):
            x = ref_block(x, sd, f"stages.{i}.{j}.", eps)
        if i in out_indices:
            outs.append(ref_layernorm_channels(x, sd[f"norm{i}.weight"], sd[f"norm{i}.bias"], eps))
    return outs


def _randomize(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 else 0.0) * 0.5)


def test_convnext_pc_matches_reference_and_awml_keys():
    bb = ConvNeXt_PC((8, 16, 16), (2, 1, 1), (1, 2), layer_scale=1.0).eval()
    _randomize(bb)
    keys = list(bb.state_dict())
    # AWML registers downsample_layers before stages, and norm{i} as each stage is built
    assert keys[0] == "downsample_layers.1.0.weight" and keys[-1] == "norm2.bias"
    block = [k for k in keys if k.startswith("stages.0.0.")]
    assert block[:6] == ["stages.0.0.gamma", "stages.0.0.depthwise_conv.weight", "stages.0.0.depthwise_conv.bias",
                        "stages.0.0.norm.weight", "stages.0.0.norm.bias", "stages.0.0.pointwise_conv1.weight"]
    assert "downsample_layers.1.0.weight" in keys and "downsample_layers.2.1.bias" in keys
    assert not any(k.startswith("downsample_layers.0") for k in keys)  # None in AWML: no keys
    assert {"norm1.weight", "norm2.bias"} <= set(keys) and "norm0.weight" not in keys
    assert bb.downsample_layers[1][0].eps == 1e-5 and bb.stages[0][0].norm.eps == 1e-6 and bb.norm1.eps == 1e-6
    assert bb.stage_names() == ("stages.0", "downsample_layers.1", "stages.1", "norm1", "downsample_layers.2",
                                "stages.2", "norm2")
    x = torch.randn(2, 8, 16, 12, generator=torch.Generator().manual_seed(1)) * 5
    with torch.no_grad():
        got = bb(x)
        want = ref_convnext_pc(x, bb.state_dict(), (2, 1, 1), (1, 2))
    assert [tuple(t.shape) for t in got] == [(2, 16, 8, 6), (2, 16, 4, 3)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_backward_pillar_features_match_awml_reference(small_cfg):
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize

    cfg = small_cfg
    vox = voxelize(prepare_points(synthetic_scene(0, cfg).points, cfg, source="test"), cfg)
    feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg).numpy()
    assert feats.shape[2] == 9 == cfg.decorated_channels
    # AWML BackwardPillarFeatureNet.forward (legacy=False), one pillar at a time in float64
    vx, vy = cfg.voxel_size[:2]
    x0, y0 = vx / 2 + cfg.point_cloud_range[0], vy / 2 + cfg.point_cloud_range[1]
    vox_np, n_np, c_np = vox.voxels.numpy().astype(np.float64), vox.num_points.numpy(), vox.coors.numpy()
    for i in range(0, len(vox_np), max(1, len(vox_np) // 50)):
        pts, n = vox_np[i, :, :4], int(n_np[i])
        mean = pts[:, :3].sum(0) / n
        centre = np.stack([pts[:, 0] - (c_np[i, 3] * vx + x0), pts[:, 1] - (c_np[i, 2] * vy + y0)], axis=1)
        want = np.concatenate([pts, pts[:, :3] - mean, centre], axis=1)
        want[n:] = 0
        np.testing.assert_allclose(feats[i], want, rtol=1e-5, atol=1e-4)
    model = build_model(cfg, seed=0, init="mmdet3d")
    assert type(model.pts_voxel_encoder).__name__ == "BackwardPillarFeatureNet"
    assert model.pts_voxel_encoder.pfn_layers[0].linear.weight.shape == (16, 9)


def test_checkpoint_round_trip_key_for_key(tmp_path, small_cfg):
    model = build_model(small_cfg, seed=5, init="mmdet3d")
    path = save_checkpoint(model, tmp_path / "convnext.pth")
    fresh = build_model(small_cfg, seed=6, init="mmdet3d")
    info = load_checkpoint(fresh, path)
    assert info.num_keys == len(model.state_dict())
    assert list(fresh.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_onnx_export_runs_in_ort_and_matches_torch(tmp_path, small_cfg):
    import onnx
    import onnxruntime as ort

    from cp_debug.recipes.centerpoint.export import example_stage_inputs, export_onnx
    from cp_debug.models.centerpoint.model import HEAD_OUTPUTS, BackboneNeckHeadStage, VoxelEncoderStage

    model = build_model(small_cfg, seed=1, init="mmdet3d")
    result = export_onnx(model, small_cfg, tmp_path)
    graph = onnx.load(str(result.backbone))
    ops = {n.op_type for n in graph.graph.node}
    assert "LayerNormalization" in ops and graph.opset_import[0].version == 17
    assert not ({"ReduceMean", "Pow"} & ops)  # one node per LayerNorm, not the decomposed chain
    feats, spatial = example_stage_inputs(model, small_cfg)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    enc = ort.InferenceSession(str(result.voxel_encoder), opts, providers=["CPUExecutionProvider"])
    bb = ort.InferenceSession(str(result.backbone), opts, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want_pillars = VoxelEncoderStage(model)(feats).numpy()
        want_maps = BackboneNeckHeadStage(model)(spatial)
    (pillars,) = enc.run(None, {"input_features": feats.numpy()})
    np.testing.assert_allclose(pillars, want_pillars, rtol=1e-4, atol=1e-4)
    maps = bb.run(None, {"spatial_features": spatial.numpy()})
    assert maps[0].shape == (1, 5, *reversed(small_cfg.head_size))
    for name, got, want in zip(HEAD_OUTPUTS, maps, want_maps):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-3, atol=1e-3, err_msg=name)


def test_equal_to_mmpretrain_where_installed():
    mmpretrain = pytest.importorskip("mmpretrain.models.backbones.convnext")
    theirs = mmpretrain.ConvNeXtBlock(16, layer_scale_init_value=1.0).eval()
    from cp_debug.models.centerpoint.convnext_pc import ConvNeXtBlock

    ours = ConvNeXtBlock(16, layer_scale=1.0).eval()
    _randomize(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 16, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
