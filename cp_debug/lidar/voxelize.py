"""Hard voxelization with mmcv's semantics, in pure vectorised torch (same result on CPU and CUDA).

mmcv (`ops/csrc/pytorch/cpu/voxelization.cpp`): per-axis index floor((p - min) / vs) in float32; a point whose
index is < 0 or >= round((max - min) / vs) on any axis is dropped; voxels are numbered in the order of their
first point; a voxel keeps its first `max_num_points` points in point order; once `max_voxels` voxels exist,
points that would open a new voxel are dropped (points of existing voxels are still added).
Giving every backend this one voxelizer's output removes voxel order as a source of divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cp_debug.lidar.space import LidarConfig


@dataclass(frozen=True)
class Voxels:
    """The voxelizer's output. coors are (batch, z, y, x), as mmdet3d's data preprocessor pads them."""

    voxels: "torch.Tensor"  # (N, max_num_points, C) float32, zero-padded
    num_points: "torch.Tensor"  # (N,) int32
    coors: "torch.Tensor"  # (N, 4) int32

    @property
    def num_voxels(self) -> int:
        return int(self.voxels.shape[0])

    def to(self, device) -> "Voxels":
        return Voxels(self.voxels.to(device), self.num_points.to(device), self.coors.to(device))

    def numpy(self) -> dict[str, np.ndarray]:
        return {
            "voxels": self.voxels.detach().cpu().numpy(),
            "num_points": self.num_points.detach().cpu().numpy(),
            "coors": self.coors.detach().cpu().numpy(),
        }


def grid_size_of(voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> tuple[int, int, int]:
    """(nx, ny, nz) = round((max - min) / vs) computed in float32 with C's round (half away from zero)."""
    vs = np.asarray(voxel_size, dtype=np.float32)
    pcr = np.asarray(point_cloud_range, dtype=np.float32)
    return tuple(int(math.floor(float(v) + 0.5)) for v in (pcr[3:] - pcr[:3]) / vs)


def hard_voxelize(
    points: "torch.Tensor",
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    max_num_points: int,
    max_voxels: int,
    batch_index: int = 0,
) -> Voxels:
    """Voxelize one point cloud (M, C) (columns 0..2 are x, y, z) into at most `max_voxels` voxels."""
    import torch

    pts = torch.as_tensor(points)
    if pts.dtype != torch.float32:
        pts = pts.to(torch.float32)
    device = pts.device
    num_feat = pts.shape[1]
    nx, ny, nz = grid_size_of(voxel_size, point_cloud_range)
    vs = torch.tensor(list(voxel_size), dtype=torch.float32, device=device)
    lo = torch.tensor(list(point_cloud_range[:3]), dtype=torch.float32, device=device)
    grid = torch.tensor([nx, ny, nz], dtype=torch.int64, device=device)

    idx = torch.floor((pts[:, :3] - lo) / vs)  # float32, exactly as the C++ kernel
    inside = ((idx >= 0) & (idx < grid.to(idx.dtype))).all(dim=1)
    pidx = torch.nonzero(inside, as_tuple=False).squeeze(1)  # ascending: point order is kept
    ixyz = idx[pidx].to(torch.int64)
    key = (ixyz[:, 2] * ny + ixyz[:, 1]) * nx + ixyz[:, 0]

    if key.numel() == 0:
        return Voxels(
            torch.zeros((0, max_num_points, num_feat), dtype=torch.float32, device=device),
            torch.zeros((0,), dtype=torch.int32, device=device),
            torch.zeros((0, 4), dtype=torch.int32, device=device),
        )

    # A stable sort groups the points by voxel and keeps point order inside each group, so a group's first
    # element is the voxel's first point and its position in the group is the point's slot.
    n_valid = key.shape[0]
    perm = torch.argsort(key, stable=True)
    skey = key[perm]
    new_group = torch.ones(n_valid, dtype=torch.bool, device=device)
    new_group[1:] = skey[1:] != skey[:-1]
    group_of_sorted = torch.cumsum(new_group.to(torch.int64), 0) - 1
    starts = torch.nonzero(new_group, as_tuple=False).squeeze(1)
    slot = torch.arange(n_valid, device=device) - starts[group_of_sorted]
    n_groups = starts.shape[0]
    counts = torch.diff(starts, append=torch.tensor([n_valid], device=device))

    first = perm[starts]  # index (among in-range points) of each group's first point
    by_first = torch.argsort(first)  # groups in order of their first point (values are distinct)
    rank = torch.empty_like(by_first)
    rank[by_first] = torch.arange(n_groups, device=device)
    voxel_of_sorted = rank[group_of_sorted]

    n_vox = min(n_groups, int(max_voxels))
    keep = (voxel_of_sorted < n_vox) & (slot < max_num_points)
    voxels = torch.zeros((n_vox, max_num_points, num_feat), dtype=torch.float32, device=device)
    voxels[voxel_of_sorted[keep], slot[keep]] = pts[pidx[perm[keep]]]
    num_points = torch.clamp(counts[by_first[:n_vox]], max=max_num_points).to(torch.int32)

    vkey = skey[starts][by_first[:n_vox]]
    z = vkey // (ny * nx)
    y = (vkey // nx) % ny
    x = vkey % nx
    b = torch.full_like(x, batch_index)
    coors = torch.stack([b, z, y, x], dim=1).to(torch.int32)
    return Voxels(voxels, num_points, coors)


def voxelize(points, cfg: "LidarConfig", *, batch_index: int = 0, device=None) -> Voxels:
    """Voxelize with a preset's voxel size, range, max_num_points and max_voxels."""
    import torch

    pts = torch.as_tensor(np.ascontiguousarray(points) if isinstance(points, np.ndarray) else points)
    if device is not None:
        pts = pts.to(device)
    return hard_voxelize(pts, cfg.voxel_size, cfg.point_cloud_range, cfg.max_num_points, cfg.max_voxels, batch_index)
