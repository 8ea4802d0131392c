"""The whole TransFusion-L detector with mmdet3d's child names (AWML projects/TransFusion/transfusion/
transfusion.py on mmdet3d 1.4's MVXTwoStageDetector), and its seeded random initialisation.

The voxel encoder, scatter, backbone and neck are CenterPoint's modules (cp_debug.models.centerpoint), built from
the TransFusion config; the head is `transfusion_head.TransFusionHead`. forward takes the voxelizer's output
(voxels, num_points, coors) as mmdet3d's extract_pts_feat does, and returns the head's outputs by AWML's names.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cp_debug.models.centerpoint.pillar_encoder import PillarFeatureNet
from cp_debug.models.centerpoint.scatter import PointPillarsScatter
from cp_debug.models.centerpoint.second import SECOND
from cp_debug.models.centerpoint.second_fpn import SECONDFPN
from cp_debug.models.transfusion.config import TransFusionConfig
from cp_debug.models.transfusion.transfusion_head import TransFusionHead


class TransFusion(nn.Module):
    """PillarFeatureNet -> PointPillarsScatter -> SECOND -> SECONDFPN -> TransFusionHead."""

    def __init__(self, cfg: TransFusionConfig):
        super().__init__()
        self.cfg = cfg
        nx, ny = cfg.grid_size
        self.pts_voxel_encoder = PillarFeatureNet.from_config(cfg, legacy=cfg.pfn_legacy)
        self.pts_middle_encoder = PointPillarsScatter(cfg.pillar_channels, (ny, nx))
        self.pts_backbone = SECOND(cfg.pillar_channels, cfg.backbone_out_channels, cfg.backbone_layer_nums,
                                   cfg.backbone_strides, eps=cfg.norm_eps, momentum=cfg.norm_momentum)
        self.pts_neck = SECONDFPN(cfg.backbone_output_channels, cfg.neck_out_channels, cfg.neck_upsample_strides,
                                  eps=cfg.norm_eps, momentum=cfg.norm_momentum,
                                  conv_for_no_stride=cfg.neck_conv_for_no_stride)
        self.pts_bbox_head = TransFusionHead(
            cfg.num_proposals, cfg.neck_channels, cfg.hidden_channel, cfg.num_classes, cfg.num_decoder_layers,
            nms_kernel_size=cfg.nms_kernel_size, bn_momentum=cfg.bn_momentum, bn_eps=cfg.head_norm_eps,
            num_heads=cfg.num_attn_heads, ffn_channels=cfg.ffn_channels, layer_norm_eps=cfg.layer_norm_eps,
            pos_input_channel=cfg.pos_input_channel, common_heads=cfg.common_heads, head_conv=cfg.head_conv,
            head_size=cfg.head_size, auxiliary=cfg.auxiliary,
        )

    def extract_pts_feat(self, voxels: torch.Tensor, num_points: torch.Tensor, coors: torch.Tensor,
                         batch_size: int | None = None) -> torch.Tensor:
        """Voxels (N, P, C), num_points (N,), coors (N, 4) (batch, z, y, x) -> the neck's BEV features.
        batch_size: mmdet3d's coors[-1, 0] + 1 when not given."""
        if batch_size is None:
            batch_size = int(coors[-1, 0]) + 1
        features = self.pts_voxel_encoder.get_input_features(voxels, num_points, coors)
        pillars = self.pts_voxel_encoder(features).squeeze(1)
        spatial = self.pts_middle_encoder(pillars, coors, batch_size)
        return self.pts_neck(self.pts_backbone(spatial))

    def forward(self, voxels: torch.Tensor, num_points: torch.Tensor, coors: torch.Tensor,
                batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """The voxelizer's output -> the head's outputs (config.HEAD_OUTPUTS)."""
        return self.pts_bbox_head(self.extract_pts_feat(voxels, num_points, coors, batch_size))


# -- initialisation ------------------------------------------------------------------------------------------
def _torch_default(module: nn.Module, generator: torch.Generator | None) -> None:
    """PyTorch's reset_parameters for a Conv / Linear, drawn from `generator`."""
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
    if module.bias is not None:
        fan_in = module.weight[0].numel()  # torch's fan_in: weight.size(1) x the kernel's cells
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def _kaiming_fan_out(module: nn.Module, generator: torch.Generator | None) -> None:
    """mmengine's KaimingInit as SECOND / SECONDFPN's init_cfg give it: normal, fan_out, relu, bias 0."""
    nn.init.kaiming_normal_(module.weight, a=0, mode="fan_out", nonlinearity="relu", generator=generator)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


@torch.no_grad()
def init_weights(model: TransFusion, generator: torch.Generator | None = None) -> None:
    """The initialisation AWML's TransFusion gets at construction (TransFusion.__init__ -> init_weights: mmengine
    runs each direct child's init_weights, no deeper):
    - pts_voxel_encoder, PFN Linear: PyTorch's default (mmdet3d's PillarFeatureNet is a plain nn.Module);
    - pts_backbone (SECOND, init_cfg Kaiming on Conv2d) and the neck's ConvTranspose2d (SECONDFPN's init_cfg):
      Kaiming normal, fan_out; the neck's Conv2d (use_conv_for_no_stride): PyTorch's default;
    - pts_bbox_head (a plain nn.Module): its own init_weights only: Xavier uniform for every decoder parameter of
      more than one dimension; everything else PyTorch's default. SeparateHead.init_weights (heatmap bias -2.19,
      Kaiming) is never called, so the prediction heads' heatmap bias is PyTorch's uniform default, not -2.19;
    - nn.MultiheadAttention's own reset: in_proj_bias and out_proj.bias 0; BN and LayerNorm: weight 1, bias 0,
      running statistics (0, 1).
    """
    head = model.pts_bbox_head
    for name, module in model.named_modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
            module.reset_parameters()
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.zeros_(module.in_proj_bias)
            nn.init.zeros_(module.out_proj.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            backbone = name.startswith("pts_backbone.")
            deconv = name.startswith("pts_neck.") and isinstance(module, nn.ConvTranspose2d)
            if backbone or deconv:
                _kaiming_fan_out(module, generator)
            elif not (name.startswith("pts_bbox_head.decoder.") and ".attn.out_proj" in name):
                _torch_default(module, generator)
    for parameter in head.decoder.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter, generator=generator)


def build_model(cfg: TransFusionConfig, seed: int | None = None) -> TransFusion:
    """A randomly initialised TransFusion in eval mode, initialised as AWML's (`init_weights`); the same seed gives
    the same weights, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        model = TransFusion(cfg)
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    init_weights(model, gen)
    return model.eval()
