"""The whole CenterPoint network with mmdet3d's child names, and the two export stages AWML deploys.

The stage wrappers hold the full model's children under the same attribute names, so every module's
qualified name inside an exported graph (`pts_backbone.blocks.0.3`, ...) equals its name in the full model
and in the checkpoint: names are the join key between PyTorch, ONNX and TensorRT probes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.centerpoint_head import CenterHead
from cp_debug.models.centerpoint.config import CenterPointConfig
from cp_debug.models.centerpoint.convnext_pc import ConvNeXt_PC
from cp_debug.models.centerpoint.pillar_encoder import BackwardPillarFeatureNet, PillarFeatureNet
from cp_debug.models.centerpoint.scatter import PointPillarsScatter
from cp_debug.models.centerpoint.second import SECOND
from cp_debug.models.centerpoint.second_fpn import SECONDFPN

STAGE_VOXEL_ENCODER = "pts_voxel_encoder"
STAGE_BACKBONE = "pts_backbone_neck_head"
VOXEL_ENCODER_INPUTS = ("input_features",)
VOXEL_ENCODER_OUTPUTS = ("pillar_features",)
BACKBONE_INPUTS = ("spatial_features",)
HEAD_OUTPUTS = ("heatmap", "reg", "height", "dim", "rot", "vel")


class CenterPoint(nn.Module):
    """Pillar CenterPoint: (Backward)PillarFeatureNet -> PointPillarsScatter -> SECOND or ConvNeXt_PC -> SECONDFPN
    -> CenterHead, as `cfg.voxel_encoder` and `cfg.backbone` say."""

    def __init__(self, cfg: CenterPointConfig):
        super().__init__()
        self.cfg = cfg
        nx, ny = cfg.grid_size
        encoder = BackwardPillarFeatureNet if cfg.voxel_encoder == "BackwardPillarFeatureNet" else PillarFeatureNet
        self.pts_voxel_encoder = encoder.from_config(cfg)
        self.pts_middle_encoder = PointPillarsScatter(cfg.pillar_channels, (ny, nx))
        self.pts_backbone = _backbone(cfg)
        self.pts_neck = SECONDFPN(
            cfg.backbone_output_channels,
            cfg.neck_out_channels,
            cfg.neck_upsample_strides,
            eps=cfg.norm_eps,
            momentum=cfg.norm_momentum,
            conv_for_no_stride=cfg.neck_conv_for_no_stride,
        )
        self.pts_bbox_head = CenterHead(
            cfg.neck_channels,
            cfg.num_classes,
            cfg.common_heads,
            share_conv_channel=cfg.share_conv_channel,
            head_conv=cfg.head_conv,
            inner_kernel=cfg.head_inner_kernel,
            init_bias=cfg.heatmap_init_bias,
            eps=cfg.head_norm_eps,
            momentum=cfg.head_norm_momentum,
        )

    def forward(self, input_features: torch.Tensor, coors: torch.Tensor,
                batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Decorated pillar features and their coors -> raw head maps by name (heatmap, reg, ...)."""
        pillars = self.pts_voxel_encoder(input_features).squeeze(1)
        spatial = self.pts_middle_encoder(pillars, coors, batch_size)
        return self.pts_bbox_head(self.pts_neck(self.pts_backbone(spatial)))


def _backbone(cfg: CenterPointConfig) -> nn.Module:
    if cfg.backbone == "ConvNeXt_PC":
        return ConvNeXt_PC(
            cfg.convnext_channels,
            cfg.convnext_depths,
            cfg.convnext_out_indices,
            mlp_ratio=cfg.convnext_mlp_ratio,
            linear_pw_conv=cfg.convnext_linear_pw_conv,
            layer_scale=cfg.convnext_layer_scale,
            norm_eps=cfg.convnext_norm_eps,
            downsample_eps=cfg.convnext_downsample_eps,
            first_downsample=cfg.convnext_first_downsample,
        )
    return SECOND(
        cfg.pillar_channels,
        cfg.backbone_out_channels,
        cfg.backbone_layer_nums,
        cfg.backbone_strides,
        eps=cfg.norm_eps,
        momentum=cfg.norm_momentum,
    )


class VoxelEncoderStage(nn.Module):
    """`pts_voxel_encoder.onnx`: input_features (N, P, C + 6) -> pillar_features (N, 1, 32)."""

    def __init__(self, model: CenterPoint):
        super().__init__()
        self.pts_voxel_encoder = model.pts_voxel_encoder
        self.training = model.training  # a wrapper must not switch the shared modules' mode

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.pts_voxel_encoder(input_features)


class BackboneNeckHeadStage(nn.Module):
    """`pts_backbone_neck_head.onnx`: spatial_features (B, 32, H, W) -> the six raw head maps in HEAD_OUTPUTS order.

    With `rot_y_axis_reference` (AWML's CenterHeadONNX option) dim comes out as [w, l, h] and rot as
    [-cos, -sin], i.e. yaw' = -yaw - pi/2; `decode(..., rot_y_axis_reference=True)` undoes it.
    """

    def __init__(self, model: CenterPoint, rot_y_axis_reference: bool = False):
        super().__init__()
        self.pts_backbone = model.pts_backbone
        self.pts_neck = model.pts_neck
        self.pts_bbox_head = model.pts_bbox_head
        self.rot_y_axis_reference = bool(rot_y_axis_reference)
        self.training = model.training

    def forward(self, spatial_features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.pts_bbox_head(self.pts_neck(self.pts_backbone(spatial_features)))
        if self.rot_y_axis_reference:
            maps = dict(maps)
            maps["dim"] = maps["dim"][:, [1, 0, 2], :, :]
            rot = maps["rot"]
            maps["rot"] = torch.cat([-rot[:, 1:2], -rot[:, 0:1]], dim=1)
        return tuple(maps[name] for name in HEAD_OUTPUTS)


def init_weights(model: CenterPoint, generator: torch.Generator | None = None) -> None:
    """mmdet3d's initialisation: Kaiming normal (fan_out, relu) for convs and deconvs, zero conv biases,
    PyTorch's default for the PFN Linear, BN weight 1 / bias 0 / running stats (0, 1), heatmap bias -4.595."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, a=0, mode="fan_out", nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
            module.reset_parameters()
    head = model.pts_bbox_head.task_heads[0]
    nn.init.constant_(head.heatmap[-1].bias, model.cfg.heatmap_init_bias)


INITS = ("realistic", "mmdet3d")


def build_model(cfg: CenterPointConfig, seed: int | None = None, *, init: str = "realistic") -> CenterPoint:
    """A randomly initialised CenterPoint in eval mode; the same seed gives the same weights, without touching
    the global RNG.

    init="mmdet3d": mmdet3d's initialisation only (BN at defaults): raw head outputs of scale 10+, so nothing
    survives decoding. init="realistic" (default): that, plus head priors and BN statistics from a synthetic
    scan (see random_init.py), so the outputs and detections look like a trained model's.
    """
    if init not in INITS:
        raise BadInputError(f"unknown init {init!r}: choose one of {', '.join(INITS)}")
    with torch.random.fork_rng(devices=[]):
        model = CenterPoint(cfg)
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(int(seed))
    init_weights(model, gen)
    if init == "realistic":
        from cp_debug.models.centerpoint.random_init import realistic_init

        realistic_init(model, None if seed is None else int(seed) + 1)
    return model.eval()
