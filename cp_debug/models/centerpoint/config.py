"""CenterPoint model configuration: the one frozen dataclass that fixes the network, and its derived sizes.

The named presets are config files (`configs/NAME.py`, read by `presets.get_preset`); config files become this
dataclass in `config_file.py`. No torch here: `cpdebug --help` and preset validation stay instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


from cp_debug.errors import BadInputError
from cp_debug.lidar.space import CLASS_NAMES, voxel_grid

VOXEL_ENCODER_FILE = "pts_voxel_encoder.onnx"  # the two ONNX files AWML deploys
BACKBONE_FILE = "pts_backbone_neck_head.onnx"

VOXEL_ENCODERS = ("PillarFeatureNet", "BackwardPillarFeatureNet")
BACKBONES = ("SECOND", "ConvNeXt_PC")
# Common heads in the order mmdet3d registers them (the heatmap head comes after them).
COMMON_HEADS = (("reg", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))


@dataclass(frozen=True)
class CenterPointConfig:
    """Everything that fixes the network's structure, the voxelizer and the decoder.

    `use_dim` picks the model's input columns out of a 5-column point file (x, y, z, intensity, time):
    (0, 1, 2, 4) for the 4-channel models (x, y, z, t), (0, 1, 2, 3, 4) for the 5-channel J6Gen2 model.
    `load_dim` is the column count of the preset's .bin point files (nuScenes/T4 `.pcd.bin`: 5), the
    default of `cpdebug --load-dim`. `sweeps_num` past scans of an info file's sample are added to its key frame
    as the test pipeline's LoadPointsFromMultiSweeps adds them (`points.load_with_sweeps`).
    """

    name: str
    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]
    max_num_points: int = 32
    max_voxels: int = 96000
    in_channels: int = 4
    use_dim: tuple[int, ...] = (0, 1, 2, 4)
    load_dim: int = 5
    # LoadPointsFromMultiSweeps (test_mode): past scans added to an info file's key frame (mmdet3d's count, besides
    # the key frame; 0 = the key frame alone) and whether points within 1 m of a sweep's sensor are dropped;
    # AWML's base pipeline: sweeps_num=1, remove_close=True. A sample that lists no sweep is its key frame alone.
    sweeps_num: int = 1
    sweeps_remove_close: bool = True
    # PillarFeatureNet (mmdet3d) or BackwardPillarFeatureNet (AWML: x, y voxel-centre offsets only, no z)
    voxel_encoder: str = "PillarFeatureNet"
    pfn_feat_channels: tuple[int, ...] = (32, 32)
    pfn_norm_eps: float = 1e-3
    pfn_norm_momentum: float = 0.01
    pfn_with_cluster_center: bool = True
    pfn_with_voxel_center: bool = True
    pfn_with_distance: bool = False
    # the backbone: "SECOND" (backbone_* fields) or "ConvNeXt_PC" (convnext_* fields)
    backbone: str = "SECOND"
    # SECOND
    backbone_out_channels: tuple[int, ...] = (64, 128, 256)
    backbone_layer_nums: tuple[int, ...] = (3, 5, 5)
    backbone_strides: tuple[int, ...] = (1, 2, 2)
    # ConvNeXt_PC (AWML projects/ConvNeXt_PC on mmpretrain's ConvNeXt blocks); stage 0 has the pillar channels
    convnext_channels: tuple[int, ...] = ()
    convnext_depths: tuple[int, ...] = ()
    convnext_out_indices: tuple[int, ...] = ()
    convnext_layer_scale: float = 1e-6  # gamma's initial value (0: no gamma)
    convnext_norm_eps: float = 1e-6  # the blocks' and the outputs' LayerNorm2d (norm_cfg LN2d)
    convnext_downsample_eps: float = 1e-5  # AWML's downsample LayerNorm2d takes nn.LayerNorm's default
    convnext_mlp_ratio: float = 4.0
    convnext_linear_pw_conv: bool = True
    convnext_first_downsample: int = 1
    # SECONDFPN
    neck_out_channels: tuple[int, ...] = (128, 128, 128)
    neck_upsample_strides: tuple[float, ...] = (0.5, 1, 2)
    neck_conv_for_no_stride: bool = True  # stride 1: Conv2d k1 (AWML); False: ConvTranspose2d k1 (mmdet3d, autoware-ml)
    norm_eps: float = 1e-3  # backbone and neck BN
    norm_momentum: float = 0.01
    # CenterHead (BN with PyTorch defaults, per the spec)
    share_conv_channel: int = 64
    head_conv: int = 64
    head_inner_kernel: int | None = None  # each head's first conv: None = final kernel 1 (mmdet3d); 3 (autoware-ml)
    common_heads: tuple[tuple[str, int], ...] = COMMON_HEADS
    head_norm_eps: float = 1e-5
    head_norm_momentum: float = 0.1
    heatmap_init_bias: float = -4.595
    class_names: tuple[str, ...] = CLASS_NAMES
    # Decoding
    out_size_factor: int = 2
    post_center_range: tuple[float, float, float, float, float, float] = (-200.0, -200.0, -10.0, 200.0, 200.0, 10.0)
    score_threshold: float = 0.1
    max_num: int = 500  # top-k per class, then overall
    nms_dist_sq: float = 1.0  # circle NMS suppresses where squared centre distance <= this (mmdet3d min_radius)
    post_max_size: int = 100
    norm_bbox: bool = True  # dim is predicted in log space
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.use_dim) != self.in_channels:
            raise BadInputError(
                f"preset {self.name!r}: use_dim {self.use_dim} picks {len(self.use_dim)} columns "
                f"but in_channels is {self.in_channels}"
            )
        if self.voxel_encoder not in VOXEL_ENCODERS:
            raise BadInputError(f"preset {self.name!r}: voxel encoder {self.voxel_encoder!r} is not built by cp_debug; "
                                f"supported: {', '.join(VOXEL_ENCODERS)}")
        if self.backbone not in BACKBONES:
            raise BadInputError(f"preset {self.name!r}: backbone {self.backbone!r} is not built by cp_debug; "
                                f"supported: {', '.join(BACKBONES)}")
        if self.backbone == "ConvNeXt_PC":
            self._check_convnext()
        levels = self.backbone_output_strides
        if len(levels) != len(self.neck_upsample_strides):
            raise BadInputError(f"preset {self.name!r}: the backbone gives {len(levels)} feature maps but the neck has "
                                f"{len(self.neck_upsample_strides)} upsample strides")
        strides = [b / u for b, u in zip(levels, self.neck_upsample_strides)]
        if any(not math.isclose(s, strides[0]) for s in strides):
            raise BadInputError(f"preset {self.name!r}: the neck brings its inputs to strides {strides}, not to one")
        stride = strides[0]
        if not math.isclose(stride, self.out_size_factor):
            raise BadInputError(
                f"preset {self.name!r}: the neck's output stride is {stride:g} but out_size_factor is "
                f"{self.out_size_factor}; the decoded boxes would be misplaced"
            )

    def _check_convnext(self) -> None:
        n = len(self.convnext_depths)
        if n == 0 or len(self.convnext_channels) != n:
            raise BadInputError(f"preset {self.name!r}: ConvNeXt_PC needs one channel count per stage "
                                f"(depths {self.convnext_depths}, channels {self.convnext_channels})")
        if not self.convnext_out_indices or any(not 0 <= i < n for i in self.convnext_out_indices):
            raise BadInputError(f"preset {self.name!r}: ConvNeXt_PC out_indices {self.convnext_out_indices} must "
                                f"pick stages in 0..{n - 1}")
        if self.convnext_channels[0] != self.pillar_channels:
            raise BadInputError(f"preset {self.name!r}: ConvNeXt_PC stage 0 has {self.convnext_channels[0]} channels "
                                f"but the pillars have {self.pillar_channels}")
        if self.convnext_first_downsample not in (0, 1):
            raise BadInputError(f"preset {self.name!r}: ConvNeXt_PC first_downsample "
                                f"{self.convnext_first_downsample} is not supported; supported: 0, 1")

    # -- derived sizes --------------------------------------------------------------------------------
    @property
    def backbone_output_channels(self) -> tuple[int, ...]:
        """Channels of the backbone's feature maps, in the order the neck takes them."""
        if self.backbone == "ConvNeXt_PC":
            return tuple(self.convnext_channels[i] for i in self.convnext_out_indices)
        return tuple(self.backbone_out_channels)

    @property
    def backbone_output_strides(self) -> tuple[int, ...]:
        """Stride of each backbone feature map relative to the BEV grid."""
        if self.backbone == "ConvNeXt_PC":
            first = self.convnext_first_downsample
            return tuple(2 ** (i + 1 - first) for i in self.convnext_out_indices)
        out, stride = [], 1
        for s in self.backbone_strides:
            stride *= s
            out.append(stride)
        return tuple(out)

    @property
    def total_stride(self) -> int:
        """The largest stride inside the backbone: grid sides that are multiples of it map back exactly."""
        if self.backbone == "ConvNeXt_PC":
            return 2 ** (len(self.convnext_depths) - self.convnext_first_downsample)
        return max(self.backbone_output_strides)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(nx, ny) as mmcv computes it: round((max - min) / voxel_size) in float32."""
        nx, ny, _ = self.grid_size_xyz
        return nx, ny

    @property
    def grid_size_xyz(self) -> tuple[int, int, int]:
        return voxel_grid(self.point_cloud_range, self.voxel_size)

    @property
    def head_size(self) -> tuple[int, int]:
        """(width, height) of the head maps."""
        nx, ny = self.grid_size
        return nx // self.out_size_factor, ny // self.out_size_factor

    @property
    def decorated_channels(self) -> int:
        """Channels of `input_features`: raw features + cluster offsets (3) + voxel-centre offsets (3; 2 for
        BackwardPillarFeatureNet, which has no z offset) + distance (1), as the flags say."""
        centre = 2 if self.voxel_encoder == "BackwardPillarFeatureNet" else 3
        return (self.in_channels + 3 * self.pfn_with_cluster_center + centre * self.pfn_with_voxel_center
                + self.pfn_with_distance)

    @property
    def pillar_channels(self) -> int:
        return self.pfn_feat_channels[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def neck_channels(self) -> int:
        return sum(self.neck_out_channels)

    def head_channels(self) -> dict[str, int]:
        """Output channels per head in ONNX output order: heatmap, reg, height, dim, rot, vel."""
        out = {"heatmap": self.num_classes}
        out.update(dict(self.common_heads))
        return out

    def with_(self, **changes) -> "CenterPointConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
