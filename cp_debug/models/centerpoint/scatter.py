"""mmdet3d's PointPillarsScatter: pillar features (N, C) onto a dense BEV canvas (B, C, ny, nx) at y * nx + x."""

from __future__ import annotations

import torch
from torch import nn


class PointPillarsScatter(nn.Module):
    """No parameters. `output_shape` is (ny, nx), as mmdet3d takes it (AWML passes (grid[0], grid[1]))."""

    def __init__(self, in_channels: int, output_shape: tuple[int, int]):
        super().__init__()
        self.in_channels = in_channels
        self.ny, self.nx = int(output_shape[0]), int(output_shape[1])

    def forward(self, voxel_features: torch.Tensor, coors: torch.Tensor, batch_size: int = 1) -> torch.Tensor:
        """voxel_features (N, C), coors (N, 4) as (batch, z, y, x) -> (batch_size, C, ny, nx)."""
        canvases = []
        for b in range(int(batch_size)):
            canvas = torch.zeros(
                self.in_channels, self.nx * self.ny, dtype=voxel_features.dtype, device=voxel_features.device
            )
            in_batch = coors[:, 0] == b
            these = coors[in_batch, :]
            indices = (these[:, 2].to(torch.long) * self.nx + these[:, 3].to(torch.long))
            canvas[:, indices] = voxel_features[in_batch, :].t()
            canvases.append(canvas)
        return torch.stack(canvases, 0).view(int(batch_size), self.in_channels, self.ny, self.nx)
