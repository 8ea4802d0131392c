"""autoware-ml's CenterPoint configs (Hydra YAML) → `CenterPointConfig`, or one line saying what cannot be built.

tier4/autoware-ml composes a config as Hydra does: the file's `defaults` list pulls in other files of its config tree
(`/tasks/detection3d/centerpoint/base`, `/datasets/t4dataset/detection3d`, …; a leading `/` is the tree's root,
otherwise the file's own folder), each merged at its `# @package` (`_global_`: the root) in list order, `_self_`
where the file's own keys go (last where the list does not say); OmegaConf then resolves the `${…}` interpolations.
`compose_yaml` does exactly that with omegaconf alone (a small composer, not hydra-core: Hydra's `compose` needs its
global initialisation and search path, and this needs only file composition), and resolves only the sections
cp_debug reads (`model`, `data_preprocessing`, the test transforms, `deploy`): a `${oc.env:…}` data root or a
`${hydra:…}` run dir elsewhere is never touched. Nothing is imported or instantiated: every `_target_` is a string
matched against the autoware-ml class cp_debug re-implements.

As for AWML configs (`config_file.py`), every key under `model` and the preprocessor is built, checked against
what cp_debug builds, or known to matter only for training; any other key or class is a BadInputError naming it.
autoware-ml's modules differ from mmdet3d's in two places, both built: the neck's stride-1 block is a
ConvTranspose2d(k=1) (`neck_conv_for_no_stride=False`), and each head branch starts with a 3×3 ConvModule
(`head_inner_kernel=3`) whose BN, like every BN of autoware-ml's ConvModule, has eps 1e-3 and momentum 0.01.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.config import CenterPointConfig
from cp_debug.lidar.space import voxel_grid
from cp_debug.models.centerpoint.config_file import _floats, _ints, _Section

YAML_SUFFIXES = (".yaml", ".yml")
_PKG = "autoware_ml."
_MODEL = _PKG + "models.detection3d.centerpoint.CenterPointDetectionModel"
_PFN = _PKG + "models.detection3d.encoders.pillar.PillarFeatureNet"
_SCATTER = _PKG + "models.detection3d.encoders.pillar.PointPillarsScatter"
_SECOND = _PKG + "models.detection3d.backbones.second.SECONDBackbone"
_FPN = _PKG + "models.detection3d.necks.second_fpn.SECONDFPN"
_HEAD = _PKG + "models.detection3d.heads.centerpoint.CenterHead"
_PREPROCESSING = _PKG + "preprocessing.base.DataPreprocessing"
_PILLARS = _PKG + "preprocessing.detection3d.point_pillar.PointPillarPreprocessor"
_SWEEPS = _PKG + "transforms.point_cloud.sweeps.LoadPointsFromMultiSweeps"
# autoware-ml's ConvModule and PFN layers: BatchNorm with eps 1e-3, momentum 0.01 everywhere
_BN = {"eps": 1e-3, "momentum": 0.01}
_HEAD_TRAINING = ("max_objs", "min_radius", "gaussian_overlap", "loss_bbox_weight")
_HEADER = re.compile(r"^#\s*@package\s+(\S+)\s*$")


def is_yaml(path: str | Path) -> bool:
    return str(path).lower().endswith(YAML_SUFFIXES)


def _omegaconf():
    from cp_debug.imports import optional

    return optional("omegaconf", "reading autoware-ml YAML configs needs omegaconf: pip install 'cp-debug[yaml]' "
                                 "(or pip install omegaconf)")


# -- composition (Hydra's defaults list, with omegaconf alone) ----------------------------------------------------


def compose_yaml(path: str | Path):
    """The composed, unresolved config (an omegaconf DictConfig) of the autoware-ml YAML file at `path`."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"config file {str(p)!r} not found")
    oc = _omegaconf()
    root = _config_root(p)
    cfg = oc.OmegaConf.create({})
    _compose_into(cfg, p.resolve(), root, "", primary=True, seen=())
    if "hydra" in cfg:  # Hydra takes its own node out of the job's config
        del cfg["hydra"]
    return cfg


def _load(path: Path) -> tuple[str | None, Any]:
    """(the `# @package` header or None, the file's contents as a DictConfig)."""
    oc = _omegaconf()
    text = path.read_text(encoding="utf-8")
    header = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        m = _HEADER.match(line.strip())
        if m:
            header = m.group(1)
    try:
        data = oc.OmegaConf.create(text)
    except Exception as err:  # noqa: BLE001 - yaml and omegaconf raise assorted types for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(f"config {str(path)!r} is not valid YAML: {first}") from None
    if not isinstance(data, oc.DictConfig):
        raise BadInputError(f"config {str(path)!r} holds a list, not a mapping of keys")
    return header, data


def _config_root(primary: Path) -> Path:
    """The folder that `/group/name` defaults are relative to: the nearest folder above `primary` that holds the
    first absolute defaults entry found in the chain (autoware-ml's `autoware_ml/configs`)."""
    _, data = _load(primary)
    entries = [e for e in _entries(data, primary) if e.startswith("/")]
    if not entries:
        return primary.parent.resolve()
    for folder in primary.resolve().parents:
        if (folder / f"{entries[0][1:]}.yaml").is_file():
            return folder
    raise BadInputError(f"config {str(primary)!r}: its defaults entry {entries[0]} is no file {entries[0][1:]}.yaml "
                        "in any folder above it; give the config inside its autoware-ml config tree "
                        "(autoware_ml/configs/...)")


def _entries(data: Any, path: Path) -> list[str]:
    """The defaults list as paths ('_self_', '/abs/name' or 'rel/name'); `group: option` entries become
    'group/option'. Package overrides (`name@pkg`), `override` and `optional` entries are refused."""
    oc = _omegaconf()
    if "defaults" not in data:
        return []
    raw = data["defaults"]
    if not isinstance(raw, oc.ListConfig):
        raise BadInputError(f"config {str(path)!r}: defaults must be a list")
    out = []
    for item in raw:
        if isinstance(item, oc.DictConfig):
            if len(item) != 1:
                raise BadInputError(f"config {str(path)!r}: defaults entry {oc.OmegaConf.to_container(item)} is not "
                                    "`group: option`")
            (group, option), = item.items()
            if str(group).split(" ")[0] in ("override", "optional"):
                raise BadInputError(f"config {str(path)!r}: defaults entry '{group}: {option}' is not composed by "
                                    "cp_debug (override/optional entries belong to Hydra's command line)")
            item = f"{group}/{option}"
        item = str(item)
        if "@" in item or " " in item:
            raise BadInputError(f"config {str(path)!r}: defaults entry {item!r} (a package override) is not "
                                "composed by cp_debug; give the file's package in its `# @package` header")
        out.append(item)
    return out


def _compose_into(cfg, path: Path, root: Path, group: str, *, primary: bool, seen: tuple[Path, ...]) -> None:
    oc = _omegaconf()
    if path in seen:
        raise BadInputError(f"config {str(path)!r} includes itself through its defaults list")
    header, data = _load(path)
    entries = _entries(data, path)
    if "defaults" in data:
        del data["defaults"]
    if "_self_" not in entries:
        entries.append("_self_")
    package = "" if primary or header == "_global_" else (header or group.replace("/", "."))
    for entry in entries:
        if entry == "_self_":
            node = oc.OmegaConf.create({})
            if package:
                oc.OmegaConf.update(node, package, data, force_add=True)
            else:
                node = data
            cfg.merge_with(node)
            continue
        target = root / f"{entry[1:]}.yaml" if entry.startswith("/") else path.parent / f"{entry}.yaml"
        if not target.is_file():
            raise BadInputError(f"config {str(path)!r}: defaults entry {entry} is no file ({target})")
        child_group = str(target.parent.relative_to(root)) if target.is_relative_to(root) else ""
        _compose_into(cfg, target.resolve(), root, "" if child_group == "." else child_group, primary=False,
                      seen=(*seen, path))


def _resolved(cfg, key: str, name: str, default: Any = None) -> Any:
    """`key` (a dotted path) of the composed config, interpolations resolved, as plain containers."""
    oc = _omegaconf()
    try:
        node = oc.OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if node is None:
            return default
        if not oc.OmegaConf.is_config(node):
            return node
        return oc.OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except oc.errors.MissingMandatoryValue as err:
        where = getattr(err, "full_key", "") or key
        raise BadInputError(f"config {name!r}: {where} is ??? (a value the config leaves to a child config): "
                            "give a complete config, not a base file") from None
    except oc.errors.OmegaConfBaseException as err:
        first = str(err).strip().splitlines()[0]
        raise BadInputError(f"config {name!r}: {key} cannot be resolved: {first}") from None


# -- the reader ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploySettings:
    """What autoware-ml's deploy step does with the config (`deploy.onnx`): which exporter, at which opset, and the
    file names (its module names + .onnx, as `autoware-ml deploy` writes them)."""

    dynamo: bool
    opset_version: int
    do_constant_folding: bool
    files: tuple[str, ...]  # voxel encoder, backbone/neck/head


def read_yaml_config(path: str | Path) -> CenterPointConfig:
    """The CenterPoint that the autoware-ml YAML config at `path` describes (named after the file's stem)."""
    p = Path(path)
    return config_from_composed(compose_yaml(p), name=p.stem)


def read_deploy_settings(path: str | Path) -> DeploySettings:
    """autoware-ml's ONNX export settings of the config at `path` (its exporter defaults where the config is silent:
    dynamo=True, opset 21, constant folding on)."""
    p = Path(path)
    onnx = _resolved(compose_yaml(p), "deploy.onnx", p.stem, {}) or {}
    modules = tuple(onnx.get("modules") or ("pts_voxel_encoder_centerpoint", "pts_backbone_neck_head_centerpoint"))
    return DeploySettings(bool(onnx.get("dynamo", True)), int(onnx.get("opset_version", 21)),
                          bool(onnx.get("do_constant_folding", True)), tuple(f"{m}.onnx" for m in modules))


def config_from_composed(cfg, name: str) -> CenterPointConfig:
    """The typed config from a composed autoware-ml config (what `compose_yaml` gives)."""
    model = _Section(_resolved(cfg, "model", name, None) or _no_model(name), "model")
    _target(model, (_MODEL,))
    model.ignore("metrics", "optimizer", "scheduler")
    fields: dict[str, Any] = {"name": name, "description": f"autoware-ml config {name}"}
    fields.update(_preprocessor(_Section(_resolved(cfg, "data_preprocessing", name, {}), "data_preprocessing")))
    fields.update(_voxel_encoder(model.section("pts_voxel_encoder"), fields))
    _scatter(model.section("pts_middle_encoder"), fields)
    fields.update(_backbone(model.section("pts_backbone"), fields))
    fields.update(_neck(model.section("pts_neck"), fields))
    fields.update(_head(model.section("bbox_head"), fields))
    model.finish()
    transforms = _resolved(cfg, "datamodule.test_transforms", name, None)
    if transforms is None:
        transforms = _resolved(cfg, "datamodule.predict_transforms", name, {})
    fields.update(_sweeps(transforms, fields["in_channels"]))
    return CenterPointConfig(**fields)


def _no_model(name: str):
    raise BadInputError(f"config {name!r} has no `model`: cp_debug builds the model from its model: section")


def _target(sec: _Section, supported: tuple[str, ...]) -> str:
    """The section's `_target_`, read as a string (never imported): one of the autoware-ml classes cp_debug builds."""
    value = sec.get("_target_")
    if value not in supported:
        sec.refuse("_target_", value, "supported: " + ", ".join(supported))
    return value


def _preprocessor(pre: _Section) -> dict:
    _target(pre, (_PREPROCESSING,))
    steps = pre.get("pipeline")
    pre.finish()
    if not isinstance(steps, list) or len(steps) != 1:
        pre.refuse("pipeline", steps, f"cp_debug voxelizes as one {_PILLARS.rsplit('.', 1)[1]} step")
    step = _Section(steps[0], "data_preprocessing.pipeline[0]")
    _target(step, (_PILLARS,))
    out = {
        "voxel_size": _floats(step.get("voxel_size"), f"{step.path}.voxel_size", 3),
        "point_cloud_range": _floats(step.get("point_cloud_range"), f"{step.path}.point_cloud_range", 6),
        "max_num_points": int(step.get("max_num_points")),
        "max_voxels": int(step.get("max_voxels")),
    }
    step.finish()
    return out


def _voxel_encoder(enc: _Section, fields: dict) -> dict:
    _target(enc, (_PFN,))
    enc.same("voxel_size", fields["voxel_size"], "the preprocessor's voxel_size")
    enc.same("point_cloud_range", fields["point_cloud_range"], "the preprocessor's point_cloud_range")
    out = {
        "voxel_encoder": "PillarFeatureNet",
        "in_channels": int(enc.get("in_channels")),
        "pfn_feat_channels": _ints(enc.get("feat_channels"), f"{enc.path}.feat_channels"),
        "pfn_with_distance": bool(enc.get("with_distance", False)),
        "pfn_with_cluster_center": bool(enc.get("with_cluster_center", True)),
        "pfn_with_voxel_center": bool(enc.get("with_voxel_center", True)),
        "pfn_norm_eps": _BN["eps"], "pfn_norm_momentum": _BN["momentum"],
    }
    enc.finish()
    return out


def _scatter(mid: _Section, fields: dict) -> None:
    _target(mid, (_SCATTER,))
    mid.same("in_channels", fields["pfn_feat_channels"][-1], "the voxel encoder's last feat_channels")
    nx, ny, _ = voxel_grid(fields["point_cloud_range"], fields["voxel_size"])
    mid.same("output_shape", (ny, nx), "the voxel grid (ny, nx) of point_cloud_range / voxel_size")
    mid.finish()


def _backbone(bb: _Section, fields: dict) -> dict:
    _target(bb, (_SECOND,))
    bb.same("in_channels", fields["pfn_feat_channels"][-1], "the pillar channels (the voxel encoder's feat_channels)")
    out = {
        "backbone": "SECOND",
        "backbone_out_channels": _ints(bb.get("out_channels"), f"{bb.path}.out_channels"),
        "backbone_layer_nums": _ints(bb.get("layer_nums"), f"{bb.path}.layer_nums"),
        "backbone_strides": _ints(bb.get("layer_strides"), f"{bb.path}.layer_strides"),
        "norm_eps": _BN["eps"], "norm_momentum": _BN["momentum"],
    }
    bb.finish()
    return out


def _neck(neck: _Section, fields: dict) -> dict:
    _target(neck, (_FPN,))
    neck.same("in_channels", fields["backbone_out_channels"], "the backbone's out_channels")
    strides = _floats(neck.get("upsample_strides"), f"{neck.path}.upsample_strides")
    out = {
        "neck_out_channels": _ints(neck.get("out_channels"), f"{neck.path}.out_channels"),
        "neck_upsample_strides": tuple(int(s) if s.is_integer() else s for s in strides),
        "neck_conv_for_no_stride": False,  # autoware-ml: stride >= 1 is a ConvTranspose2d
    }
    neck.finish()
    return out


def _head(head: _Section, fields: dict) -> dict:
    _target(head, (_HEAD,))
    head.same("in_channels", sum(fields["neck_out_channels"]), "the sum of the neck's out_channels")
    class_names = tuple(str(c) for c in head.get("class_names"))
    head.same("num_classes", len(class_names), "the number of class_names")
    head.same("point_cloud_range", fields["point_cloud_range"], "the preprocessor's point_cloud_range")
    head.same("voxel_size", fields["voxel_size"], "the preprocessor's voxel_size")
    if head.get("use_velocity", True) is not True:
        head.refuse("use_velocity", head.get("use_velocity"), "cp_debug builds the vel head (use_velocity: true)")
    shared = int(head.get("shared_channels"))
    post_max_size = int(head.get("post_max_size"))
    out = {
        "class_names": class_names,
        "share_conv_channel": shared,
        "head_conv": shared,  # autoware-ml's branches keep the shared width
        "head_inner_kernel": 3,
        "head_norm_eps": _BN["eps"], "head_norm_momentum": _BN["momentum"],
        "heatmap_init_bias": float(head.get("heatmap_init_bias", -2.19)),
        "out_size_factor": int(head.get("out_size_factor")),
        "score_threshold": float(head.get("score_threshold")),
        "post_max_size": post_max_size,
        # autoware-ml keeps the top post_max_size per class before its per-class circle NMS
        "max_num": post_max_size * len(class_names),
        "nms_dist_sq": float(head.get("nms_min_radius")) ** 2,  # it suppresses where the distance <= the radius
    }
    head.ignore(*_HEAD_TRAINING)
    head.finish()
    return out


def _sweeps(transforms: Mapping[str, Any], in_channels: int) -> dict:
    """load_dim, use_dim and the sweeps from the test transforms' LoadPointsFromMultiSweeps (its sweeps_num counts
    the key frame; cp_debug's, as mmdet3d's, counts the past scans besides it)."""
    steps = (transforms or {}).get("pipeline") or []
    step = next((s for s in steps if isinstance(s, Mapping) and s.get("_target_") == _SWEEPS), None)
    if step is None:
        use_dim = tuple(range(in_channels))
        return {"use_dim": use_dim, "load_dim": 5, "sweeps_num": 0, "sweeps_remove_close": False}
    load_dim = int(step.get("load_dim", 5))
    dims = step.get("use_dim")
    use_dim = tuple(range(min(load_dim, 4))) if dims is None else _ints(dims, "LoadPointsFromMultiSweeps.use_dim")
    if len(use_dim) != in_channels:
        raise BadInputError(f"the test transforms' use_dim {list(use_dim)} gives {len(use_dim)} point columns but "
                            f"model.pts_voxel_encoder.in_channels is {in_channels}")
    num = step.get("sweeps_num")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise BadInputError(f"LoadPointsFromMultiSweeps.sweeps_num {num!r}: give a count >= 1 "
                            "(it counts the key frame)")
    return {"use_dim": use_dim, "load_dim": load_dim, "sweeps_num": num - 1,
            "sweeps_remove_close": bool(step.get("remove_close", False))}
