from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.model import build_model
from cp_debug.models.centerpoint.pillar_encoder import get_input_features
from cp_debug.models.centerpoint.scatter import PointPillarsScatter
from cp_debug.lidar.synthetic import synthetic_scene
from cp_debug.lidar.voxelize import voxelize


def _reference_decoration(voxels, num_points, coors, cfg):
    """centerpoint-spec.md §2, written out per pillar and slot."""
    n, p, c = voxels.shape
    vx, vy, vz = cfg.voxel_size
    x0, y0, z0 = cfg.point_cloud_range[:3]
    out = np.zeros((n, p, c + 6), np.float64)
    for i in range(n):
        k = int(num_points[i])
        pts = voxels[i, :k].astype(np.float64)
        mean = voxels[i, :, :3].astype(np.float64).sum(0) / k
        _, iz, iy, ix = coors[i]
        centre = np.array([ix * vx + vx / 2 + x0, iy * vy + vy / 2 + y0, iz * vz + vz / 2 + z0])
        out[i, :k, :c] = pts
        out[i, :k, c : c + 3] = pts[:, :3] - mean
        out[i, :k, c + 3 :] = pts[:, :3] - centre
    return out


def _scene_voxels(cfg):
    pts = synthetic_scene(3, cfg).points[:, list(cfg.use_dim)]
    return voxelize(pts, cfg)


def test_decorated_features_match_the_spec():
    cfg = get_preset("tiny")
    v = _scene_voxels(cfg)
    feats = get_input_features(v.voxels, v.num_points, v.coors, cfg)
    assert feats.shape == (v.num_voxels, 32, 10) and feats.dtype == torch.float32
    sel = slice(0, 400)
    ref = _reference_decoration(v.voxels[sel].numpy(), v.num_points[sel].numpy(), v.coors[sel].numpy(), cfg)
    np.testing.assert_allclose(feats[sel].numpy(), ref, atol=2e-5, rtol=0)
    # padded slots are exactly zero
    mask = torch.arange(32)[None, :] >= v.num_points[:, None]
    assert (feats[mask] == 0).all()


def test_module_method_equals_function():
    cfg = get_preset("tiny")
    model = build_model(cfg, seed=0, init="mmdet3d")
    v = _scene_voxels(cfg)
    a = get_input_features(v.voxels, v.num_points, v.coors, cfg)
    b = model.pts_voxel_encoder.get_input_features(v.voxels, v.num_points, v.coors)
    assert torch.equal(a, b)


def test_pfn_has_no_mask_and_returns_n_1_32():
    """Padded (zero) rows take part in the max, as in training."""
    cfg = get_preset("tiny")
    model = build_model(cfg, seed=0, init="mmdet3d")
    v = _scene_voxels(cfg)
    feats = get_input_features(v.voxels, v.num_points, v.coors, cfg)
    with torch.no_grad():
        out = model.pts_voxel_encoder(feats)
        l0, l1 = model.pts_voxel_encoder.pfn_layers

        def layer(x, pfn):
            y = F.relu(pfn.norm(pfn.linear(x).permute(0, 2, 1)).permute(0, 2, 1))
            return y, y.max(dim=1, keepdim=True)[0]

        y0, m0 = layer(feats, l0)
        _, m1 = layer(torch.cat([y0, m0.expand_as(y0)], 2), l1)
    assert out.shape == (v.num_voxels, 1, 32)
    torch.testing.assert_close(out, m1, rtol=0, atol=1e-5)


def test_scatter_places_pillars_at_y_times_nx_plus_x():
    scatter = PointPillarsScatter(3, (4, 5))  # ny=4, nx=5
    coors = torch.tensor([[0, 0, 1, 2], [0, 0, 3, 4], [1, 0, 0, 0]], dtype=torch.int32)
    feats = torch.arange(9, dtype=torch.float32).view(3, 3) + 1
    canvas = scatter(feats, coors, 2)
    assert canvas.shape == (2, 3, 4, 5)
    assert torch.equal(canvas[0, :, 1, 2], feats[0]) and torch.equal(canvas[0, :, 3, 4], feats[1])
    assert torch.equal(canvas[1, :, 0, 0], feats[2])
    assert int((canvas != 0).sum()) == 9
