"""autoware-ml's CenterPoint names → cp_debug's (mmdet3d's): one table for checkpoint keys and module paths.

tier4/autoware-ml's `CenterPointDetectionModel` (a LightningModule) holds `pts_voxel_encoder`, `pts_middle_encoder`,
`pts_backbone`, `pts_neck` and `bbox_head`; its export wrappers hold the same modules as `voxel_encoder`, `backbone`,
`neck`, `bbox_head`, so a checkpoint's keys and an exported graph's scopes name the same modules two ways. Its blocks
are `ConvModule(conv, norm, activation)` where mmdet3d's SECOND and SECONDFPN use flat Sequentials, and its
CenterHead keeps one branch per output (`bbox_head.heatmap`, `bbox_head.reg`, …) where mmdet3d's has
`task_heads.0.<name>`. (The voxel encoder's wrapper calls `voxel_encoder.encode_decorated`, not the module, so
the TorchScript exporter names its nodes `/pfn_layers.0/...` without the wrapper's level.) `to_cp_debug(name)`
renames a key or a module path (None where cp_debug has no counterpart:
a backbone ConvModule, whose value is its ReLU's, and the loss and metric modules); `is_autoware_ml_state` tells a
Lightning state dict of autoware-ml from an mmdet3d one.
"""

from __future__ import annotations

from typing import Iterable

HEADS = ("heatmap", "reg", "height", "dim", "rot", "vel")
_PREFIX = {"voxel_encoder": "pts_voxel_encoder", "pts_voxel_encoder": "pts_voxel_encoder",
           "pts_middle_encoder": "pts_middle_encoder", "backbone": "pts_backbone", "pts_backbone": "pts_backbone",
           "neck": "pts_neck", "pts_neck": "pts_neck", "bbox_head": "pts_bbox_head"}
_SEQUENTIAL = {"conv": 0, "norm": 1, "activation": 2}  # a ConvModule's children as a flat Sequential's indices
_CONV_MODULE = {"conv": "conv", "norm": "bn", "activation": "activate"}  # ... as mmcv's ConvModule names them
_NOT_BUILT = ("_metrics_by_stage", "loss_heatmap", "loss_bbox")


def is_autoware_ml_state(keys: Iterable[str]) -> bool:
    """Whether these state-dict keys are autoware-ml's (its head is `bbox_head.<branch>`, mmdet3d's `pts_bbox_head`)."""
    return any(k.startswith("bbox_head.") for k in keys)


def to_cp_debug(name: str) -> str | None:
    """cp_debug's name for autoware-ml's key or module path `name`; None where cp_debug has no counterpart; `name`
    itself where it is no autoware-ml CenterPoint name (the caller reports it)."""
    parts = name.split(".")
    if parts[0] in _NOT_BUILT:
        return None
    if parts[0] == "pfn_layers":  # the voxel encoder's export wrapper calls encode_decorated: no wrapper scope
        return f"pts_voxel_encoder.{name}"
    top = _PREFIX.get(parts[0])
    if top is None:
        return name
    rest = parts[1:]
    if top == "pts_backbone":
        rest = _backbone(rest)
    elif top == "pts_neck":
        rest = _neck(rest)
    elif top == "pts_bbox_head":
        rest = _head(rest)
    return None if rest is None else ".".join([top, *rest])


def _backbone(rest: list[str]) -> list[str] | None:
    # blocks.i.j.{conv,norm,activation}.param -> blocks.i.(3j + k).param; blocks.i.j (a ConvModule) has no module
    if len(rest) < 3 or rest[0] != "blocks":
        return rest
    if len(rest) == 3:
        return None
    if rest[3] not in _SEQUENTIAL or not rest[2].isdigit():
        return rest
    return ["blocks", rest[1], str(3 * int(rest[2]) + _SEQUENTIAL[rest[3]]), *rest[4:]]


def _neck(rest: list[str]) -> list[str]:
    # blocks.i.{conv,norm,activation} (stride >= 1, a ConvModule) or blocks.i.{0,1,2} (a Sequential) -> deblocks.i.k
    if not rest or rest[0] != "blocks":
        return rest
    out = ["deblocks", *rest[1:]]
    if len(out) >= 3 and out[2] in _SEQUENTIAL:
        out[2] = str(_SEQUENTIAL[out[2]])
    return out


def _head(rest: list[str]) -> list[str] | None:
    if not rest:
        return rest
    if rest[0] in _NOT_BUILT:
        return None
    if rest[0] == "shared_conv":
        return ["shared_conv", *_conv_module(rest[1:])]
    if rest[0] in HEADS:
        tail = rest[1:]
        if len(tail) >= 2 and tail[0] == "0":
            tail = ["0", *_conv_module(tail[1:])]
        return ["task_heads", "0", rest[0], *tail]
    return rest


def _conv_module(rest: list[str]) -> list[str]:
    return [_CONV_MODULE.get(rest[0], rest[0]), *rest[1:]] if rest else rest
