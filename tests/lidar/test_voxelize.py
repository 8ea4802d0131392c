"""The vectorised voxelizer against a straightforward per-point loop written from mmcv's C++ kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.voxelize import hard_voxelize, voxelize


def loop_voxelize(points, voxel_size, pcr, max_points, max_voxels):
    """mmcv hard_voxelize_forward_cpu_kernel, one point at a time, in float32."""
    vs = np.asarray(voxel_size, np.float32)
    lo = np.asarray(pcr[:3], np.float32)
    hi = np.asarray(pcr[3:], np.float32)
    grid = [int(math.floor(float(g) + 0.5)) for g in (hi - lo) / vs]
    coor_to_voxel = {}
    voxels, num, coors = [], [], []
    for p in points.astype(np.float32):
        c = []
        ok = True
        for j in range(3):
            v = int(np.floor((p[j] - lo[j]) / vs[j]))
            if v < 0 or v >= grid[j]:
                ok = False
                break
            c.append(v)
        if not ok:
            continue
        key = (c[2], c[1], c[0])  # (z, y, x)
        idx = coor_to_voxel.get(key)
        if idx is None:
            if len(voxels) >= max_voxels:
                continue
            idx = len(voxels)
            coor_to_voxel[key] = idx
            voxels.append(np.zeros((max_points, points.shape[1]), np.float32))
            num.append(0)
            coors.append(key)
        if num[idx] < max_points:
            voxels[idx][num[idx]] = p
            num[idx] += 1
    n = len(voxels)
    return (
        np.stack(voxels) if n else np.zeros((0, max_points, points.shape[1]), np.float32),
        np.asarray(num, np.int32),
        np.asarray([(0, *c) for c in coors], np.int32).reshape(-1, 4),
    )


def _cloud(seed, n=3000):
    rng = np.random.default_rng(seed)
    pts = np.concatenate(
        [
            rng.uniform([-5, -5, -3.5, 0], [5, 5, 5.5, 1], (n, 4)),  # some beyond z and xy limits
            rng.normal([0.3, -0.2, 0, 0.5], [0.2, 0.2, 1, 0.1], (n // 2, 4)),  # dense clusters overflow voxels
        ]
    ).astype(np.float32)
    pts = pts[rng.permutation(len(pts))]
    # points exactly on the lower and upper boundaries
    pts[:4, :3] = [[-4.0, -4.0, -3.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [3.999, 3.999, 4.999]]
    return pts


@pytest.mark.parametrize(
    "seed, max_points, max_voxels", [(0, 5, 10_000), (1, 32, 10_000), (2, 4, 25), (3, 1, 7)]
)
def test_matches_loop_reference(seed, max_points, max_voxels):
    pts = _cloud(seed)
    vs, pcr = (0.5, 0.5, 8.0), (-4.0, -4.0, -3.0, 4.0, 4.0, 5.0)
    ref_v, ref_n, ref_c = loop_voxelize(pts, vs, pcr, max_points, max_voxels)
    got = hard_voxelize(torch.from_numpy(pts), vs, pcr, max_points, max_voxels)
    assert got.voxels.dtype == torch.float32
    assert got.num_points.dtype == torch.int32 and got.coors.dtype == torch.int32
    np.testing.assert_array_equal(got.coors.numpy(), ref_c)
    np.testing.assert_array_equal(got.num_points.numpy(), ref_n)
    np.testing.assert_array_equal(got.voxels.numpy(), ref_v)
    assert got.num_voxels == min(max_voxels, len(ref_n))


def test_fine_grid_with_awml_voxel_size():
    """0.24 m pillars: the float32 index computation decides the cell of points near cell edges."""
    rng = np.random.default_rng(5)
    pts = rng.uniform([-122.4, -122.4, -3, 0], [122.4, 122.4, 5, 1], (4000, 4)).astype(np.float32)
    edges = (np.arange(-510, 510, 37) * np.float32(0.24)).astype(np.float32)
    pts[: len(edges), 0] = edges
    pts[: len(edges), 1] = edges[::-1]
    cfg = get_preset("awml-base")
    ref = loop_voxelize(pts, cfg.voxel_size, cfg.point_cloud_range, 32, cfg.max_voxels)
    got = voxelize(pts, cfg)
    np.testing.assert_array_equal(got.coors.numpy(), ref[2])
    np.testing.assert_array_equal(got.voxels.numpy(), ref[0])


def test_deterministic_and_batch_index():
    pts = _cloud(7)
    a = hard_voxelize(torch.from_numpy(pts), (0.5, 0.5, 8.0), (-4, -4, -3, 4, 4, 5), 32, 1000, batch_index=3)
    b = hard_voxelize(torch.from_numpy(pts), (0.5, 0.5, 8.0), (-4, -4, -3, 4, 4, 5), 32, 1000, batch_index=3)
    assert torch.equal(a.voxels, b.voxels) and torch.equal(a.coors, b.coors)
    assert (a.coors[:, 0] == 3).all()


def test_nothing_in_range_gives_zero_voxels():
    pts = np.full((10, 4), 100.0, np.float32)
    v = hard_voxelize(torch.from_numpy(pts), (0.5, 0.5, 8.0), (-4, -4, -3, 4, 4, 5), 32, 100)
    assert v.num_voxels == 0 and v.voxels.shape == (0, 32, 4) and v.coors.shape == (0, 4)
