"""AWML's TransFusion config files -> TransFusionConfig through the `_base_` chain (the three T4 families, copied
unchanged under awml_configs/), a child that overrides num_proposals, the presets, and the refusals."""

from __future__ import annotations

import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest

from cp_debug.errors import BadInputError
from cp_debug.models.transfusion.config import TransFusionConfig
from cp_debug.models.transfusion.presets import AWML_CONFIGS, PRESET_NAMES, get_preset

pytestmark = pytest.mark.needs("mmengine")

from cp_debug.models.transfusion.config_file import read_config  # noqa: E402

T4 = Path(__file__).parent / "awml_configs" / "projects" / "TransFusion" / "configs" / "t4dataset"
CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")


def awml(preset: str) -> TransFusionConfig:
    return read_config(T4 / AWML_CONFIGS[preset])


@pytest.mark.parametrize("preset, pcr, voxel, grid, head, pfn", [
    ("transfusion-t4-90m-768", 92.16, 0.24, 768, 192, (64, 64)),
    ("transfusion-t4-nearby-50m-512", 51.2, 0.2, 512, 128, (64,)),
    ("transfusion-t4-offline-120m-768", 122.88, 0.32, 768, 192, (64, 64)),
])
def test_the_three_t4_configs_read_as_awml_builds_them(preset, pcr, voxel, grid, head, pfn):
    cfg = awml(preset)
    assert cfg.point_cloud_range == pytest.approx((-pcr, -pcr, -3.0, pcr, pcr, 7.0))
    assert cfg.voxel_size == pytest.approx((voxel, voxel, 10.0))
    assert cfg.grid_size == (grid, grid) and cfg.head_size == (head, head)
    assert cfg.class_names == CLASSES  # num_classes=_base_.num_class, the dataset base's five
    assert cfg.num_proposals == 500 and cfg.num_decoder_layers == 1 and cfg.auxiliary
    assert (cfg.hidden_channel, cfg.num_attn_heads, cfg.ffn_channels) == (128, 8, 256)
    assert cfg.nms_kernel_size == 3 and cfg.out_size_factor == 4
    assert cfg.pfn_feat_channels == pfn and cfg.pfn_legacy is True  # mmdet3d's default, not set by AWML
    assert (cfg.in_channels, cfg.max_num_points, cfg.max_voxels) == (5, 20, 60000)
    assert cfg.backbone_strides == (2, 2, 2) and cfg.neck_upsample_strides == (0.5, 1, 2)
    assert cfg.common_heads == (("center", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))
    assert cfg.score_threshold == 0.0 and cfg.code_size == 10
    assert cfg.use_dim == (0, 1, 2, 3, 4) and cfg.sweeps_num == 1 and cfg.sweeps_remove_close


@pytest.mark.parametrize("preset", sorted(AWML_CONFIGS))
def test_each_t4_preset_is_the_awml_config_it_stands_for(preset):
    ours, theirs = asdict(get_preset(preset)), asdict(awml(preset))
    for d in (ours, theirs):
        d.pop("name"), d.pop("description")
    assert ours == theirs


def test_the_tiny_preset_is_small_and_every_preset_loads():
    for name in PRESET_NAMES:
        assert get_preset(name).name == name
    tiny = get_preset("transfusion-tiny")
    assert tiny.grid_size == (128, 128) and tiny.head_size == (32, 32) and tiny.num_proposals == 40


def test_a_child_of_awmls_config_overrides_num_proposals_as_mmengine_merges(tmp_path):
    base = T4 / AWML_CONFIGS["transfusion-t4-90m-768"]
    child = tmp_path / "more_proposals.py"
    child.write_text(textwrap.dedent(f"""
        _base_ = [{str(base)!r}]
        model = dict(pts_bbox_head=dict(num_proposals=200))
    """))
    cfg = read_config(child)
    assert cfg.num_proposals == 200
    assert cfg.name == "more_proposals"
    assert cfg.with_(num_proposals=500, name="x") == awml("transfusion-t4-90m-768").with_(name="x")


@pytest.mark.parametrize("override, words", [
    ("test_cfg=dict(pts=dict(nms_type='circle'))", "nms_type"),
    ("pts_bbox_head=dict(loss_cls=dict(use_sigmoid=False))", "use_sigmoid"),
    ("pts_bbox_head=dict(nms_kernel_size=1)", "nms_kernel_size"),
    ("pts_bbox_head=dict(num_classes=4)", "class_names"),
    ("pts_bbox_head=dict(common_heads=dict(center=(2, 3), height=(1, 2), dim=(3, 2), rot=(2, 2)))", "num_conv"),
    ("pts_bbox_head=dict(decoder_layer=dict(ffn_cfg=dict(num_fcs=3)))", "num_fcs"),
    ("pts_bbox_head=dict(unknown_option=1)", "unknown_option"),
])
def test_what_cp_debug_does_not_build_is_one_line_naming_the_key(tmp_path, override, words):
    base = T4 / AWML_CONFIGS["transfusion-t4-90m-768"]
    child = tmp_path / "child.py"
    child.write_text(f"_base_ = [{str(base)!r}]\nmodel = dict({override})\n")
    with pytest.raises(BadInputError, match=words) as err:
        read_config(child)
    assert "\n" not in str(err.value)


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(BadInputError, match="transfusion-tiny"):
        get_preset("transfusion-huge")
