from __future__ import annotations

import pytest

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.config import PRESETS, get_preset


@pytest.mark.parametrize(
    "name, grid, head, osf, max_voxels, c",
    [
        ("awml-base", (1020, 1020), (510, 510), 2, 96000, 4),
        ("awml-j6gen2", (1020, 1020), (510, 510), 2, 96000, 5),
        ("awml-760", (760, 760), (760, 760), 1, 64000, 4),
        ("demo", (320, 320), (160, 160), 2, 30000, 4),
        ("tiny", (160, 160), (80, 80), 2, 12000, 4),
    ],
)
def test_presets(name, grid, head, osf, max_voxels, c):
    cfg = get_preset(name)
    assert cfg.grid_size == grid
    assert cfg.head_size == head
    assert cfg.out_size_factor == osf
    assert cfg.max_voxels == max_voxels
    assert cfg.in_channels == c
    assert cfg.decorated_channels == c + 6
    assert cfg.max_num_points == 32
    assert cfg.class_names == ("car", "truck", "bus", "bicycle", "pedestrian")
    assert cfg.score_threshold == 0.1 and cfg.nms_dist_sq == 1.0 and cfg.post_max_size == 100


def test_awml_ranges():
    assert get_preset("awml-base").point_cloud_range == (-122.4, -122.4, -3.0, 122.4, 122.4, 5.0)
    assert get_preset("awml-760").voxel_size == (0.32, 0.32, 8.0)
    assert get_preset("awml-760").neck_upsample_strides == (1, 2, 4)
    assert get_preset("awml-j6gen2").use_dim == (0, 1, 2, 3, 4)


def test_unknown_preset_lists_presets():
    with pytest.raises(BadInputError) as err:
        get_preset("awml-bass")
    msg = str(err.value)
    assert "awml-bass" in msg
    for name in PRESETS:
        assert name in msg


def test_inconsistent_config_is_refused():
    with pytest.raises(BadInputError, match="out_size_factor"):
        get_preset("demo").with_(out_size_factor=4)
