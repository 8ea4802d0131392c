"""TransFusion's state_dict equals AWML's key for key: the golden list in tests/data/transfusion was written out from
AWML's, mmdet3d's and mmcv's code (its header says how), not from cp_debug's model."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cp_debug.models.transfusion.model import TransFusion  # noqa: E402
from cp_debug.models.transfusion.presets import get_preset  # noqa: E402

GOLDEN = Path(__file__).parents[2] / "data" / "transfusion" / "transfusion_t4_90m_768_state_dict.txt"


def golden() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in GOLDEN.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split()
            rows.append((key, () if shape == "-" else tuple(int(s) for s in shape.split(","))))
    return rows


def ours(preset: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in TransFusion(get_preset(preset)).state_dict().items()]


def test_the_t4_90m_768_model_has_awmls_keys_in_awmls_order_with_awmls_shapes():
    want, got = golden(), ours("transfusion-t4-90m-768")
    assert [k for k, _ in got] == [k for k, _ in want]
    assert got == want
    assert sum(k.startswith("pts_bbox_head.") for k, _ in got) == 96


def test_the_head_holds_no_bev_positions_and_the_attention_is_torchs_inside_mmcvs_wrapper():
    keys = [k for k, _ in ours("transfusion-t4-90m-768")]
    assert not any("bev_pos" in k for k in keys)
    assert "pts_bbox_head.decoder.0.cross_attn.attn.in_proj_weight" in keys
    assert "pts_bbox_head.shared_conv.bias" in keys  # bias="auto" reaches nn.Conv2d as a truthy value


@pytest.mark.parametrize("preset", ["transfusion-tiny", "transfusion-t4-offline-120m-768"])
def test_tiny_and_offline_have_the_same_keys_and_shapes_as_the_t4_model(preset):
    assert ours(preset) == golden()


def test_nearby_has_one_pfn_layer_of_64():
    got = dict(ours("transfusion-t4-nearby-50m-512"))
    assert got["pts_voxel_encoder.pfn_layers.0.linear.weight"] == (64, 11)
    assert not any(k.startswith("pts_voxel_encoder.pfn_layers.1.") for k in got)
    want = {k: s for k, s in golden() if not k.startswith("pts_voxel_encoder.")}
    assert {k: s for k, s in got.items() if not k.startswith("pts_voxel_encoder.")} == want
