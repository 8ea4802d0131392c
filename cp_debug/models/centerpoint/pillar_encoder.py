"""mmdet3d's PillarFeatureNet as AWML deploys it (pillar_encoder_onnx): decoration in torch, PFN in the graph.

`get_input_features` builds the decorated features (N, P, C + 6; C + 5 for AWML's BackwardPillarFeatureNet, which
drops the z offset from the voxel centre) that the `pts_voxel_encoder.onnx` file takes;
`PillarFeatureNet.forward` runs the PFN layers on them and returns (N, 1, 32). As in training, there is no
mask inside the PFN: padded (all-zero) rows take part in the max.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.centerpoint.config import CenterPointConfig


def _decorate(
    features: torch.Tensor,
    num_points: torch.Tensor,
    coors: torch.Tensor,
    in_channels: int,
    vx: float,
    vy: float,
    vz: float,
    x_offset: float,
    y_offset: float,
    z_offset: float,
    *,
    cluster: bool = True,
    centre_dims: int = 3,
    distance: bool = False,
    legacy: bool = False,
) -> torch.Tensor:
    # The same operations, in the same order, as mmdet3d/AWML's get_input_features (legacy=False):
    # raw features, cluster offsets, voxel-centre offsets (x, y and, but for BackwardPillarFeatureNet, z), distance.
    # legacy=True (mmdet3d PillarFeatureNet's default, which AWML's TransFusion configs keep): mmdet3d takes the
    # centre offsets in place on a view of the raw xyz, so the first three channels (and the distance) are the
    # offsets too. Done here without writing into the caller's tensor.
    if features.shape[-1] > in_channels:
        features = features[:, :, :in_channels]
    features_ls = [features]
    if cluster:
        points_mean = features[:, :, :3].sum(dim=1, keepdim=True) / num_points.type_as(features).view(-1, 1, 1)
        features_ls.append(features[:, :, :3] - points_mean)
    dtype = features.dtype
    if centre_dims:
        f_center = torch.zeros_like(features[:, :, :centre_dims])
        f_center[:, :, 0] = features[:, :, 0] - (coors[:, 3].to(dtype).unsqueeze(1) * vx + x_offset)
        f_center[:, :, 1] = features[:, :, 1] - (coors[:, 2].to(dtype).unsqueeze(1) * vy + y_offset)
        if centre_dims == 3:
            f_center[:, :, 2] = features[:, :, 2] - (coors[:, 1].to(dtype).unsqueeze(1) * vz + z_offset)
        if legacy:
            features = torch.cat([f_center, features[:, :, centre_dims:]], dim=-1)
            features_ls[0] = features
        features_ls.append(f_center)
    if distance:
        features_ls.append(torch.norm(features[:, :, :3], 2, 2, keepdim=True))
    features = torch.cat(features_ls, dim=-1)
    # mmdet3d's get_paddings_indicator: slot < num_points
    slots = torch.arange(features.shape[1], dtype=torch.int64, device=features.device).view(1, -1)
    mask = (num_points.to(torch.int64).view(-1, 1) > slots).unsqueeze(-1).type_as(features)
    return features * mask


def get_input_features(
    voxels: torch.Tensor, num_points: torch.Tensor, coors: torch.Tensor, cfg: "CenterPointConfig"
) -> torch.Tensor:
    """Decorated pillar features (N, P, cfg.decorated_channels): raw features, xyz - pillar mean, xyz (xy for
    BackwardPillarFeatureNet) - voxel centre, as the config's flags say; zeroed beyond each pillar's point count."""
    vx, vy, vz = cfg.voxel_size
    pcr = cfg.point_cloud_range
    return _decorate(
        voxels, num_points, coors, cfg.in_channels, vx, vy, vz, vx / 2 + pcr[0], vy / 2 + pcr[1], vz / 2 + pcr[2],
        cluster=cfg.pfn_with_cluster_center, centre_dims=_centre_dims(cfg.voxel_encoder, cfg.pfn_with_voxel_center),
        distance=cfg.pfn_with_distance,
    )


def _centre_dims(voxel_encoder: str, with_voxel_center: bool) -> int:
    if not with_voxel_center:
        return 0
    return 2 if voxel_encoder == "BackwardPillarFeatureNet" else 3


class PFNLayer(nn.Module):
    """Linear (no bias) -> BN1d -> ReLU -> max over points; all but the last layer concatenate the max back.

    `norm` is registered before `linear`, as in mmdet3d, so the state_dict key order matches.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        eps: float = 1e-3,
        momentum: float = 0.01,
        last_layer: bool = False,
    ):
        super().__init__()
        self.last_vfe = last_layer
        if not last_layer:
            out_channels = out_channels // 2
        self.units = out_channels
        self.norm = nn.BatchNorm1d(self.units, eps=eps, momentum=momentum)
        self.linear = nn.Linear(in_channels, self.units, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.linear(inputs)
        x = self.norm(x.permute(0, 2, 1).contiguous()).permute(0, 2, 1).contiguous()
        x = F.relu(x)
        x_max = torch.max(x, dim=1, keepdim=True)[0]
        if self.last_vfe:
            return x_max
        x_repeat = x_max.repeat(1, inputs.shape[1], 1)
        return torch.cat([x, x_repeat], dim=2)


class PillarFeatureNet(nn.Module):
    """mmdet3d PillarFeatureNet (legacy=False, max mode; cluster centre, voxel centre and distance as flagged)."""

    CENTRE_DIMS = 3  # x, y and z offsets from the voxel centre

    def __init__(
        self,
        in_channels: int = 4,
        feat_channels: Sequence[int] = (32, 32),
        voxel_size: Sequence[float] = (0.24, 0.24, 8.0),
        point_cloud_range: Sequence[float] = (-122.4, -122.4, -3.0, 122.4, 122.4, 5.0),
        *,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
        with_cluster_center: bool = True,
        with_voxel_center: bool = True,
        with_distance: bool = False,
        legacy: bool = False,
    ):
        super().__init__()
        self.legacy = bool(legacy)
        self.raw_channels = in_channels
        self.with_cluster_center = bool(with_cluster_center)
        self.centre_dims = self.CENTRE_DIMS if with_voxel_center else 0
        self.with_distance = bool(with_distance)
        self.in_channels = in_channels + 3 * self.with_cluster_center + self.centre_dims + self.with_distance
        chans = [self.in_channels, *feat_channels]
        layers = []
        for i in range(len(chans) - 1):
            layers.append(
                PFNLayer(
                    chans[i],
                    chans[i + 1],
                    eps=norm_eps,
                    momentum=norm_momentum,
                    last_layer=i >= len(chans) - 2,
                )
            )
        self.pfn_layers = nn.ModuleList(layers)
        self.vx, self.vy, self.vz = (float(v) for v in voxel_size)
        self.x_offset = self.vx / 2 + point_cloud_range[0]
        self.y_offset = self.vy / 2 + point_cloud_range[1]
        self.z_offset = self.vz / 2 + point_cloud_range[2]

    @classmethod
    def from_config(cls, cfg, *, legacy: bool = False) -> "PillarFeatureNet":
        """The encoder of a detector config (CenterPoint's, TransFusion-L's: their `in_channels`, `pfn_*`,
        `voxel_size` and `point_cloud_range`)."""
        return cls(cfg.in_channels, cfg.pfn_feat_channels, cfg.voxel_size, cfg.point_cloud_range,
                   norm_eps=cfg.pfn_norm_eps, norm_momentum=cfg.pfn_norm_momentum,
                   with_cluster_center=cfg.pfn_with_cluster_center, with_voxel_center=cfg.pfn_with_voxel_center,
                   with_distance=cfg.pfn_with_distance, legacy=legacy)

    def get_input_features(self, voxels: torch.Tensor, num_points: torch.Tensor, coors: torch.Tensor) -> torch.Tensor:
        return _decorate(
            voxels, num_points, coors, self.raw_channels,
            self.vx, self.vy, self.vz, self.x_offset, self.y_offset, self.z_offset,
            cluster=self.with_cluster_center, centre_dims=self.centre_dims, distance=self.with_distance,
            legacy=self.legacy,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, P, C + 6) decorated features -> (N, 1, 32) pillar features."""
        for pfn in self.pfn_layers:
            features = pfn(features)
        return features


class BackwardPillarFeatureNet(PillarFeatureNet):
    """AWML's BackwardPillarFeatureNet (projects/CenterPoint/models/voxel_encoders/pillar_encoder.py): the same PFN
    layers and state_dict keys, fed without the z offset from the voxel centre (C + 5 decorated channels: raw
    features, xyz - pillar mean, xy - voxel centre), as the models trained with older mmdet3d versions."""

    CENTRE_DIMS = 2
