"""Your own modules as the reference: what a `--model-factory FILE.py:FUNC` returns, and the checks of its contract.

FUNC() returns a `UserCenterPoint`: the voxel encoder and the backbone/neck/head as the deployment exports them
(an AWML/mmdet3d model's parts, autoware-ml's, or any private `torch.nn.Module`), and the CenterPoint settings
cp_debug needs for what runs around them (voxelize, the decorated features, scatter, decode). cp_debug hooks those
modules (probe names are their own qualified names), exports them as the deployment does (TorchScript, opset 17,
the two files' input/output names) and runs its own glue between them. The contract, as cp_debug's own stages keep
it (`model.py`: VOXEL_ENCODER_INPUTS/OUTPUTS, BACKBONE_INPUTS, HEAD_OUTPUTS):

- `voxel_encoder(input_features)`: input_features float32 (N, P, C), C = `cfg.decorated_channels` (the raw point
  features, then the offsets from the pillar mean and the voxel centre, as the config's pfn_with_* flags say; rows
  beyond a pillar's point count are zero) -> pillar_features, one float32 tensor (N, 1, D) or (N, D) with
  D = `cfg.pillar_channels` (the last of `pfn_feat_channels`).
- `backbone_neck_head(spatial_features)`: spatial_features float32 (1, D, ny, nx) (the pillars scattered on the BEV
  grid, (nx, ny) = `cfg.grid_size`) -> a tuple of six float32 tensors in the order heatmap, reg, height, dim, rot,
  vel, each (1, channels, ny / out_size_factor, nx / out_size_factor), channels = `cfg.head_channels()`: raw maps
  (no sigmoid on the heatmap, dim in log space where norm_bbox), as the deployed `pts_backbone_neck_head.onnx` gives.

Each break of the contract is one line naming the stage and the module (`check_encoder_output`,
`check_head_outputs`); an export that fails is named the same way by the subject that exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from cp_debug.errors import BadInputError

if TYPE_CHECKING:
    from cp_debug.models.centerpoint.config import CenterPointConfig

HEAD_ORDER = ("heatmap", "reg", "height", "dim", "rot", "vel")  # = model.HEAD_OUTPUTS (no torch imported here)


@dataclass(frozen=True)
class UserCenterPoint:
    """What a model factory returns.

    `config`: the CenterPoint settings — a `CenterPointConfig`, a preset name or config file (`.py`, as --preset /
    --config take them), or a dict of `CenterPointConfig` keyword arguments (`name`, `point_cloud_range`,
    `voxel_size`, ...). Only what runs around the modules reads it: the voxelizer, the decorated features, the
    scatter, decode and the shape checks; the modules are yours. `voxel_encoder_prefix` / `backbone_neck_head_prefix`:
    where the module sits in your whole model (e.g. "pts_voxel_encoder"), put before its probe names; "" keeps the
    module's own names (the two modules' names must then differ). `weights`: the weights in words, for the report.
    """

    voxel_encoder: Any  # torch.nn.Module
    backbone_neck_head: Any  # torch.nn.Module
    config: Any = "demo"  # CenterPointConfig | str | Mapping
    name: str = ""
    voxel_encoder_prefix: str = ""
    backbone_neck_head_prefix: str = ""
    weights: str = "the factory's own"
    description: Mapping = field(default_factory=dict)  # anything the factory wants in the report


ModelFactoryResult = UserCenterPoint  # the other name the contract is known by


def factory_config(config, where: str) -> "CenterPointConfig":
    """The CenterPointConfig a factory's `config` names (see UserCenterPoint); one line where it names none."""
    from cp_debug.models.centerpoint.config import CenterPointConfig
    from cp_debug.models.centerpoint.presets import as_config

    if isinstance(config, CenterPointConfig):
        return config
    if isinstance(config, Mapping):
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        kwargs.setdefault("name", "model-factory")
        try:
            return CenterPointConfig(**kwargs)
        except TypeError as err:
            raise BadInputError(f"{where}: config is not CenterPointConfig's keyword arguments ({err})") from None
    if isinstance(config, str):
        return as_config(config)
    raise BadInputError(f"{where}: config is a {type(config).__name__}; give a CenterPointConfig, a preset name, a "
                        "config file or a dict of CenterPointConfig keyword arguments")


def check_factory_result(got, where: str) -> UserCenterPoint:
    """`got`, the factory's return, if it is a UserCenterPoint of two torch modules; else one line saying so."""
    import torch

    if not isinstance(got, UserCenterPoint):
        raise BadInputError(f"{where} returned a {type(got).__name__}; return "
                            "cp_debug.models.centerpoint.factory.UserCenterPoint(voxel_encoder=..., "
                            "backbone_neck_head=..., config=...)")
    for field_name in ("voxel_encoder", "backbone_neck_head"):
        module = getattr(got, field_name)
        if not isinstance(module, torch.nn.Module):
            raise BadInputError(f"{where}: {field_name} is a {type(module).__name__}, not a torch.nn.Module")
    for field_name in ("voxel_encoder_prefix", "backbone_neck_head_prefix"):
        prefix = getattr(got, field_name)
        if not isinstance(prefix, str) or any(not p.isidentifier() for p in prefix.split(".") if prefix):
            raise BadInputError(f"{where}: {field_name} {prefix!r} is not a dotted module name (e.g. "
                                "'pts_voxel_encoder') or ''")
    return got


def _kind(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a tensor {list(value.shape)}"
    if isinstance(value, Mapping):
        return f"a dict (keys {', '.join(map(str, value))})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def check_encoder_output(out, module, cfg: "CenterPointConfig", n_voxels: int, stage: str) -> None:
    """One line where the voxel encoder's output breaks the contract (one tensor (N, 1, D) or (N, D))."""
    import torch

    who = f"{stage} ({type(module).__name__})"
    want = f"(N, 1, {cfg.pillar_channels}) or (N, {cfg.pillar_channels}), N = {n_voxels} pillars"
    if not isinstance(out, torch.Tensor):
        raise BadInputError(f"{who} returns {_kind(out)}, not a tensor: the deployed {stage} gives one tensor, "
                            f"pillar_features {want}")
    shape = tuple(out.shape)
    ok = (len(shape) == 3 and shape[1] == 1) or len(shape) == 2
    if not ok or shape[0] != n_voxels or shape[-1] != cfg.pillar_channels:
        raise BadInputError(f"{who} returns pillar_features of shape {list(shape)}, not {want} "
                            f"(cfg {cfg.name!r}: pfn_feat_channels {list(cfg.pfn_feat_channels)})")
    if not out.dtype.is_floating_point:
        raise BadInputError(f"{who} returns {out.dtype} pillar_features; the deployment's are float32")


def check_head_outputs(outs, module, cfg: "CenterPointConfig", spatial_shape, stage: str) -> None:
    """One line where the backbone/neck/head's outputs break the contract (six tensors, HEAD_ORDER, sized)."""
    import torch

    who = f"{stage} ({type(module).__name__})"
    order = ", ".join(HEAD_ORDER)
    if isinstance(outs, Mapping):
        raise BadInputError(f"{who} returns {_kind(outs)}, not a tuple: the deployed {stage} gives six tensors in "
                            f"the order {order}; return tuple(maps[k] for k in ({order}))")
    if not isinstance(outs, (tuple, list)) or len(outs) != len(HEAD_ORDER):
        raise BadInputError(f"{who} returns {_kind(outs)}; the deployed {stage} gives a tuple of six tensors: "
                            f"{order}")
    ny, nx = spatial_shape[-2:]
    f = cfg.out_size_factor
    channels = cfg.head_channels()
    for name, out in zip(HEAD_ORDER, outs):
        if not isinstance(out, torch.Tensor):
            raise BadInputError(f"{who}: output {name} is {_kind(out)}, not a tensor")
        want = (spatial_shape[0], channels[name], ny // f, nx // f)
        if tuple(out.shape) != want:
            raise BadInputError(f"{who}: output {name} has shape {list(out.shape)}, not {list(want)} (cfg "
                                f"{cfg.name!r}: {channels[name]} channels, out_size_factor {f} on a {nx}x{ny} grid; "
                                f"outputs in the order {order})")
