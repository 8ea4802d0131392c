"""state_dict keys and shapes equal mmdet3d's, key for key (centerpoint-spec.md §3)."""

from __future__ import annotations

import pytest

from cp_debug.models.centerpoint.presets import PRESET_NAMES, get_preset
from cp_debug.models.centerpoint.model import build_model


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    """BN[C] = weight, bias, running_mean, running_var [C] + num_batches_tracked []."""
    return [(f"{prefix}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{prefix}.num_batches_tracked", ())
    ]


def _awml_base_table() -> list[tuple[str, tuple[int, ...]]]:
    t: list[tuple[str, tuple[int, ...]]] = []
    # PFN: norm registered before linear.
    t += _bn("pts_voxel_encoder.pfn_layers.0.norm", 16)
    t += [("pts_voxel_encoder.pfn_layers.0.linear.weight", (16, 10))]
    t += _bn("pts_voxel_encoder.pfn_layers.1.norm", 32)
    t += [("pts_voxel_encoder.pfn_layers.1.linear.weight", (32, 32))]
    # SECOND: blocks.{i}.{0,3,6,...} convs, .{1,4,7,...} BN; in 32, out [64,128,256], layer_nums [3,5,5].
    for i, (cin, c, n) in enumerate([(32, 64, 3), (64, 128, 5), (128, 256, 5)]):
        t += [(f"pts_backbone.blocks.{i}.0.weight", (c, cin, 3, 3))]
        t += _bn(f"pts_backbone.blocks.{i}.1", c)
        for j in range(1, n + 1):
            t += [(f"pts_backbone.blocks.{i}.{3 * j}.weight", (c, c, 3, 3))]
            t += _bn(f"pts_backbone.blocks.{i}.{3 * j + 1}", c)
    # SECONDFPN: Conv k2 s2 [128,64,2,2], Conv k1 [128,128,1,1], ConvT [256,128,2,2] (in, out, kH, kW).
    for i, shape in enumerate([(128, 64, 2, 2), (128, 128, 1, 1), (256, 128, 2, 2)]):
        t += [(f"pts_neck.deblocks.{i}.0.weight", shape)]
        t += _bn(f"pts_neck.deblocks.{i}.1", 128)
    # CenterHead
    t += [("pts_bbox_head.shared_conv.conv.weight", (64, 384, 3, 3))]
    t += _bn("pts_bbox_head.shared_conv.bn", 64)
    for head, c in [("reg", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2), ("heatmap", 5)]:
        p = f"pts_bbox_head.task_heads.0.{head}"
        t += [(f"{p}.0.conv.weight", (64, 64, 1, 1))]
        t += _bn(f"{p}.0.bn", 64)
        t += [(f"{p}.1.weight", (c, 64, 1, 1)), (f"{p}.1.bias", (c,))]
    return t


AWML_BASE = _awml_base_table()


@pytest.fixture(scope="module")
def base_state():
    return build_model(get_preset("awml-base"), seed=0, init="mmdet3d").state_dict()


def test_table_has_180_keys():
    assert len(AWML_BASE) == 180
    assert len({k for k, _ in AWML_BASE}) == 180


def test_awml_base_keys_and_shapes_in_order(base_state):
    got = [(k, tuple(v.shape)) for k, v in base_state.items()]
    assert got == AWML_BASE


@pytest.mark.parametrize("name", ["demo", "tiny"])
def test_small_presets_share_awml_base_keys(name):
    sd = build_model(get_preset(name), seed=0, init="mmdet3d").state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == AWML_BASE


def test_j6gen2_differs_only_in_pfn_input():
    sd = build_model(get_preset("awml-j6gen2"), seed=0, init="mmdet3d").state_dict()
    got = {k: tuple(v.shape) for k, v in sd.items()}
    exp = dict(AWML_BASE)
    assert len(got) == 180 and got.keys() == exp.keys()
    diff = {k for k in got if got[k] != exp[k]}
    assert diff == {"pts_voxel_encoder.pfn_layers.0.linear.weight"}
    assert got["pts_voxel_encoder.pfn_layers.0.linear.weight"] == (16, 11)


def test_760_neck_deblocks():
    sd = build_model(get_preset("awml-760"), seed=0, init="mmdet3d").state_dict()
    got = {k: tuple(v.shape) for k, v in sd.items()}
    exp = dict(AWML_BASE)
    assert len(got) == 180 and got.keys() == exp.keys()
    # deblock0 Conv k1, deblock1 ConvT k2, deblock2 ConvT k4
    assert got["pts_neck.deblocks.0.0.weight"] == (128, 64, 1, 1)
    assert got["pts_neck.deblocks.1.0.weight"] == (128, 128, 2, 2)
    assert got["pts_neck.deblocks.2.0.weight"] == (256, 128, 4, 4)
    assert {k for k in got if got[k] != exp[k]} == {f"pts_neck.deblocks.{i}.0.weight" for i in range(3)}


def test_module_types_and_norm_settings():
    from torch import nn

    m = build_model(get_preset("tiny"), seed=0, init="mmdet3d")
    assert isinstance(m.pts_neck.deblocks[0][0], nn.Conv2d)
    assert isinstance(m.pts_neck.deblocks[2][0], nn.ConvTranspose2d)
    pfn_bn = m.pts_voxel_encoder.pfn_layers[0].norm
    assert (pfn_bn.eps, pfn_bn.momentum) == (1e-3, 0.01)
    bb_bn = m.pts_backbone.blocks[1][4]
    assert (bb_bn.eps, bb_bn.momentum) == (1e-3, 0.01)
    head_bn = m.pts_bbox_head.task_heads[0].heatmap[0].bn
    assert (head_bn.eps, head_bn.momentum) == (1e-5, 0.1)
    assert float(m.pts_bbox_head.task_heads[0].heatmap[1].bias[0].detach()) == pytest.approx(-4.595)
    assert all(conv.bias is None for conv in m.pts_backbone.modules() if isinstance(conv, nn.Conv2d))
    assert not m.training


def test_every_preset_builds_with_180_keys():
    for name in PRESET_NAMES:
        cfg = get_preset(name)
        if cfg.backbone != "SECOND":  # convnextpc-demo: tests/models/centerpoint/test_cp_convnext_pc.py
            continue
        assert len(build_model(cfg, seed=0, init="mmdet3d").state_dict()) == 180, name
