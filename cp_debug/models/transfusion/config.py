"""TransFusion-L configuration: the one frozen dataclass that fixes the network, and its derived sizes.

Fields shared with CenterPoint (voxelizer, PillarFeatureNet, SECOND, SECONDFPN, the test pipeline) carry
`CenterPointConfig`'s names, so the same readers fill them (`config_file.py`) and the same voxelizer takes either
config. Defaults are AWML's `Transfusion-L` T4 model (projects/TransFusion/configs/t4dataset/default/model/
transfusion_lidar_pillar_second_secfpn_1xb1_90m-768grid.py). No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from cp_debug.errors import BadInputError
from cp_debug.lidar.space import CLASS_NAMES, voxel_grid

# mmdet3d SeparateHead heads of AWML's T4 TransFusionHead, in registration order (the heatmap head comes after)
COMMON_HEADS = (("center", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))
# the outputs of TransFusionHead.forward_single in eval mode, by AWML's names (query_labels: the head's attribute)
HEAD_OUTPUTS = ("center", "height", "dim", "rot", "vel", "heatmap", "query_heatmap_score", "dense_heatmap",
                "query_labels")


@dataclass(frozen=True)
class TransFusionConfig:
    """Everything that fixes TransFusion-L's structure, the voxelizer and the decoder.

    `pfn_legacy`: mmdet3d PillarFeatureNet's `legacy` flag (default True, which AWML's TransFusion configs keep): the
    first three decorated channels are then the offsets from the voxel centre, not the raw x, y, z.
    `nms_kernel_size`: the local-max window on the dense heatmap (cells whose sigmoid is not the window's maximum,
    and every cell of the border the window does not cover, are no proposal). `num_proposals` queries are the top
    of (classes x cells).
    """

    name: str
    point_cloud_range: tuple[float, float, float, float, float, float] = (-92.16, -92.16, -3.0, 92.16, 92.16, 7.0)
    voxel_size: tuple[float, float, float] = (0.24, 0.24, 10.0)
    max_num_points: int = 20
    max_voxels: int = 60000
    in_channels: int = 5
    use_dim: tuple[int, ...] = (0, 1, 2, 3, 4)
    load_dim: int = 5
    sweeps_num: int = 1
    sweeps_remove_close: bool = True
    # PillarFeatureNet (mmdet3d)
    pfn_feat_channels: tuple[int, ...] = (64, 64)
    pfn_norm_eps: float = 1e-3
    pfn_norm_momentum: float = 0.01
    pfn_with_cluster_center: bool = True
    pfn_with_voxel_center: bool = True
    pfn_with_distance: bool = False
    pfn_legacy: bool = True
    # SECOND
    backbone_out_channels: tuple[int, ...] = (64, 128, 256)
    backbone_layer_nums: tuple[int, ...] = (3, 5, 5)
    backbone_strides: tuple[int, ...] = (2, 2, 2)
    # SECONDFPN
    neck_out_channels: tuple[int, ...] = (128, 128, 128)
    neck_upsample_strides: tuple[float, ...] = (0.5, 1, 2)
    neck_conv_for_no_stride: bool = True
    norm_eps: float = 1e-3  # backbone and neck BN
    norm_momentum: float = 0.01
    # TransFusionHead
    num_proposals: int = 500
    auxiliary: bool = True
    hidden_channel: int = 128
    num_decoder_layers: int = 1
    nms_kernel_size: int = 3
    bn_momentum: float = 0.1  # every BN of the head (init_bn_momentum)
    head_norm_eps: float = 1e-5
    num_attn_heads: int = 8
    ffn_channels: int = 256
    layer_norm_eps: float = 1e-5
    pos_input_channel: int = 2
    head_conv: int = 64  # SeparateHead's inner channels (mmdet3d's default; AWML does not set it)
    common_heads: tuple[tuple[str, int], ...] = COMMON_HEADS
    class_names: tuple[str, ...] = CLASS_NAMES
    # TransFusionBBoxCoder and test_cfg
    out_size_factor: int = 4
    post_center_range: tuple[float, float, float, float, float, float] | None = (-200.0, -200.0, -10.0, 200.0,
                                                                                  200.0, 10.0)
    score_threshold: float | None = 0.0
    dataset: str = "nuScenes"  # test_cfg.pts.dataset: picks the NMS tasks, which nms_type None never runs
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"TransFusion config {self.name!r}"
        if len(self.use_dim) != self.in_channels:
            raise BadInputError(f"{where}: use_dim {self.use_dim} picks {len(self.use_dim)} columns but in_channels "
                                f"is {self.in_channels}")
        if len(self.neck_upsample_strides) != len(self.backbone_strides):
            raise BadInputError(f"{where}: the backbone gives {len(self.backbone_strides)} feature maps but the neck "
                                f"has {len(self.neck_upsample_strides)} upsample strides")
        strides = [b / u for b, u in zip(self.backbone_output_strides, self.neck_upsample_strides)]
        if any(not math.isclose(s, self.out_size_factor) for s in strides):
            raise BadInputError(f"{where}: the neck brings its inputs to strides {strides}, not to out_size_factor "
                                f"{self.out_size_factor}; the proposals' BEV positions would be misplaced")
        if self.nms_kernel_size < 3 or self.nms_kernel_size % 2 == 0:
            raise BadInputError(f"{where}: nms_kernel_size {self.nms_kernel_size} is not built; give an odd size "
                                ">= 3 (AWML's forward_single writes the pooled map into [pad:-pad], an empty slice "
                                "for size 1)")
        if self.hidden_channel % self.num_attn_heads:
            raise BadInputError(f"{where}: hidden_channel {self.hidden_channel} is not a multiple of the "
                                f"{self.num_attn_heads} attention heads")
        nx, ny = self.head_size
        candidates = self.num_classes * nx * ny
        if self.num_proposals < 1 or self.num_proposals > candidates:
            raise BadInputError(f"{where}: num_proposals {self.num_proposals} must be in 1..{candidates} "
                                f"(classes x {nx}x{ny} head cells)")
        if "center" not in dict(self.common_heads):
            raise BadInputError(f"{where}: common_heads {dict(self.common_heads)} have no `center`; the decoder "
                                "layers' query positions come from it")

    # -- derived sizes --------------------------------------------------------------------------------
    @property
    def backbone_output_strides(self) -> tuple[int, ...]:
        out, stride = [], 1
        for s in self.backbone_strides:
            stride *= s
            out.append(stride)
        return tuple(out)

    @property
    def backbone_output_channels(self) -> tuple[int, ...]:
        return tuple(self.backbone_out_channels)

    @property
    def total_stride(self) -> int:
        return max(self.backbone_output_strides)

    @property
    def grid_size_xyz(self) -> tuple[int, int, int]:
        return voxel_grid(self.point_cloud_range, self.voxel_size)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(nx, ny) as mmcv computes it."""
        nx, ny, _ = self.grid_size_xyz
        return nx, ny

    @property
    def head_size(self) -> tuple[int, int]:
        """(x_size, y_size) of the head's BEV maps: grid // out_size_factor, as the head's bev_pos takes them."""
        nx, ny = self.grid_size
        return nx // self.out_size_factor, ny // self.out_size_factor

    @property
    def decorated_channels(self) -> int:
        return self.in_channels + 3 * self.pfn_with_cluster_center + 3 * self.pfn_with_voxel_center \
            + self.pfn_with_distance

    @property
    def pillar_channels(self) -> int:
        return self.pfn_feat_channels[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def neck_channels(self) -> int:
        return sum(self.neck_out_channels)

    @property
    def code_size(self) -> int:
        """TransFusionBBoxCoder's code size: 10 with velocity, 8 without."""
        return 10 if "vel" in dict(self.common_heads) else 8

    def with_(self, **changes) -> "TransFusionConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
