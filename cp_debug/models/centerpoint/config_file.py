"""AWML / mmdet3d config files (mmengine syntax) → `CenterPointConfig`, or one line saying what cannot be built.

`read_config(path)` reads the file with mmengine's `Config.fromfile` (the `_base_` chain, `{{_base_.x}}`
references, `_delete_`), with `import_custom_modules=False`: the file's `custom_imports` are never imported, so
none of the user's code (projects.*, autoware_ml.*) runs. (The config file itself is Python that mmengine
evaluates, as every mmengine tool does.) `config_from_dict` turns the resulting plain dict into the typed config.

Every key under `model` is either built, checked against what cp_debug builds, or known to matter only for
training (losses, freezing, drop path, checkpointing); any other key, module type or option is a BadInputError
naming its key path, its value and what is supported — never a silently different model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.config import COMMON_HEADS, CenterPointConfig
from cp_debug.lidar.space import voxel_grid

_MISSING = object()
MODEL_TYPES = ("CenterPoint", "CenterPointONNX")  # the config's model.type this reader builds (recipes.catalog asks)
# mmdet3d's PillarFeatureNet defaults (a key the config leaves out takes these)
_PFN_DEFAULTS = {"in_channels": 4, "feat_channels": (64,), "with_distance": False, "with_cluster_center": True,
                 "with_voxel_center": True, "voxel_size": (0.2, 0.2, 4), "point_cloud_range": (0, -40, -3, 70.4, 40, 1),
                 "mode": "max", "legacy": True}
_VOXEL_ENCODERS = {"PillarFeatureNet": "PillarFeatureNet", "PillarFeatureNetONNX": "PillarFeatureNet",
                   "BackwardPillarFeatureNet": "BackwardPillarFeatureNet",
                   "BackwardPillarFeatureNetONNX": "BackwardPillarFeatureNet"}
_TRAINING_ONLY = ("init_cfg", "pretrained", "frozen_stages", "with_cp", "drop_path_rate", "loss_cls", "loss_bbox",
                  "freeze_shared_conv", "freeze_task_heads", "train_cfg")


class _Section:
    """One dict of the config with its key path; remembers which keys were read so the rest can be refused."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise BadInputError(f"{path} = {data!r} must be a dict")
        self.data, self.path, self.read = dict(data), path, set()

    def get(self, key: str, default: Any = _MISSING) -> Any:
        self.read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise BadInputError(f"{self.path}.{key} is missing: cp_debug needs it to build the model")
        return default

    def section(self, key: str, default: Any = _MISSING) -> "_Section":
        return _Section(self.get(key, default), f"{self.path}.{key}")

    def ignore(self, *keys: str) -> None:
        self.read.update(keys)

    def expect(self, key: str, supported: Sequence[Any], default: Any = _MISSING) -> Any:
        """The value of `key`, which must be one of `supported`."""
        value = self.get(key, default)
        if value not in supported:
            self.refuse(key, value, "supported: " + ", ".join(repr(s) for s in supported))
        return value

    def same(self, key: str, expected: Any, what: str, default: Any = _MISSING) -> None:
        """`key` must equal `expected` (numbers compared as floats): one value in the model, set in two places."""
        value = self.get(key, default)
        if not _equal(value, expected):
            self.refuse(key, value, f"it must equal {what} ({_show(expected)})")

    def refuse(self, key: str, value: Any, why: str) -> None:
        raise BadInputError(f"{self.path}.{key} = {_show(value)} is not built by cp_debug; {why}")

    def finish(self) -> None:
        extra = [k for k in self.data if k not in self.read and k != "_delete_"]
        if extra:
            k = extra[0]
            self.refuse(k, self.data[k],
                        f"cp_debug does not read this key here (it reads {', '.join(sorted(self.read))})")


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _ints(value: Any, path: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise BadInputError(f"{path} = {value!r} must be a list of integers") from None


def _floats(value: Any, path: str, n: int | None = None) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise BadInputError(f"{path} = {value!r} must be a list of numbers") from None
    if n is not None and len(out) != n:
        raise BadInputError(f"{path} = {_show(value)} must have {n} numbers")
    return out


def _norm(sec: _Section, key: str, types: Sequence[str], eps: float, momentum: float | None) -> tuple[float, float]:
    """(eps, momentum) of a norm_cfg (mmcv's defaults where the config says none)."""
    norm = sec.section(key, {"type": types[0]})
    norm.expect("type", types)
    out = (float(norm.get("eps", eps)), float(norm.get("momentum", momentum)) if momentum is not None else 0.0)
    norm.ignore("requires_grad")
    norm.finish()
    return out


# -- the reader ---------------------------------------------------------------------------------------------


def read_config(path: str | Path) -> CenterPointConfig:
    """The CenterPoint that the mmengine config file at `path` describes (named after the file's stem).

    Needs mmengine (`pip install 'cp-debug[config]'`, which brings mmengine-lite; a full mmengine works too).
    """
    data = load_config_dict(path)
    return config_from_dict(data, name=Path(path).stem, description=str(data.get("cp_debug_description") or ""))


def load_config_dict(path: str | Path) -> dict[str, Any]:
    """The plain dict of the mmengine config file at `path`: `Config.fromfile` with the `_base_` chain merged and
    custom_imports never imported; each way the file or its chain can be broken is one BadInputError."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"config file {str(p)!r} not found")
    from cp_debug.imports import optional

    Config = optional("mmengine.config", "reading config files needs mmengine: pip install 'cp-debug[config]' "
                                         "(mmengine-lite) or mmengine", label="mmengine").Config
    from cp_debug.models.centerpoint.config_bases import base_loop

    loop = base_loop(p)
    if loop is not None:
        raise BadInputError(f"config {str(p)!r}: its _base_ chain loops ({' → '.join(f.name for f in loop)}); "
                            "break the loop")
    try:
        cfg = Config.fromfile(str(p), import_custom_modules=False, lazy_import=False)
    except FileNotFoundError as err:
        raise BadInputError(f"config {str(p)!r}: a _base_ file is missing: {err}") from None
    except KeyError as err:
        raise BadInputError(f"config {str(p)!r}: {{{{_base_.x}}}} names a key its _base_ files do not define: "
                            f"{err}") from None
    except SyntaxError as err:
        raise BadInputError(f"config {str(p)!r} is not valid Python: {err.msg} (line {err.lineno})") from None
    except Exception as err:  # mmengine reports a broken chain or file with assorted exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(f"config {str(p)!r} cannot be read: {first}") from None
    return cfg.to_dict()


def config_from_dict(data: Mapping[str, Any], name: str, description: str = "") -> CenterPointConfig:
    """The typed config from a config file's dict (what `Config.fromfile(...).to_dict()` gives)."""
    if "model" not in data:
        raise BadInputError(f"config {name!r} has no `model`: cp_debug builds the model from model=dict(...)")
    model = _Section(data["model"], "model")
    model.expect("type", MODEL_TYPES)
    fields: dict[str, Any] = {"name": name, "description": description or f"config file {name}"}
    fields.update(_voxel_layer(model.section("data_preprocessor")))
    fields.update(_voxel_encoder(model.section("pts_voxel_encoder"), fields))
    backbone = model.section("pts_backbone")
    fields.update(_backbone(backbone, fields["pfn_feat_channels"][-1]))
    _middle_encoder(model.section("pts_middle_encoder"), fields)
    fields.update(_neck(model.section("pts_neck"), fields))
    fields.update(_head(model.section("pts_bbox_head"), fields))
    fields.update(_test_cfg(model.section("test_cfg", {}), fields))
    model.ignore("train_cfg", "init_cfg")
    model.finish()
    fields.update(_pipeline(data, fields["in_channels"]))
    return CenterPointConfig(**fields)


def _voxel_layer(pre: _Section) -> dict:
    pre.expect("type", ("Det3DDataPreprocessor",))
    pre.expect("voxel", (True,))
    pre.expect("voxel_type", ("hard",), "hard")
    pre.ignore("batch_first")
    layer = pre.section("voxel_layer")
    pre.finish()
    max_voxels = layer.get("max_voxels")
    test_voxels = max_voxels[1] if isinstance(max_voxels, (list, tuple)) else max_voxels
    out = {
        "max_num_points": int(layer.get("max_num_points")),
        "voxel_size": _floats(layer.get("voxel_size"), f"{layer.path}.voxel_size", 3),
        "point_cloud_range": _floats(layer.get("point_cloud_range"), f"{layer.path}.point_cloud_range", 6),
        "max_voxels": int(test_voxels),
    }
    layer.ignore("deterministic")  # cp_debug's voxelizer is deterministic (mmcv's order) either way
    layer.finish()
    return out


def _voxel_encoder(enc: _Section, fields: dict, *, legacy_ok: bool = False) -> dict:
    """The PFN's fields; `legacy_ok` (TransFusion's reader) takes legacy=True and says so as `pfn_legacy`."""
    kind = enc.expect("type", tuple(_VOXEL_ENCODERS))
    d = _PFN_DEFAULTS
    out = {
        "voxel_encoder": _VOXEL_ENCODERS[kind],
        "in_channels": int(enc.get("in_channels", d["in_channels"])),
        "pfn_feat_channels": _ints(enc.get("feat_channels", d["feat_channels"]), f"{enc.path}.feat_channels"),
        "pfn_with_distance": bool(enc.get("with_distance", d["with_distance"])),
        "pfn_with_cluster_center": bool(enc.get("with_cluster_center", d["with_cluster_center"])),
        "pfn_with_voxel_center": bool(enc.get("with_voxel_center", d["with_voxel_center"])),
    }
    enc.same("voxel_size", fields["voxel_size"], "data_preprocessor.voxel_layer.voxel_size", d["voxel_size"])
    enc.same("point_cloud_range", fields["point_cloud_range"], "data_preprocessor.voxel_layer.point_cloud_range",
             d["point_cloud_range"])
    enc.expect("mode", ("max",), d["mode"])
    if legacy_ok and kind == "PillarFeatureNet":
        out["pfn_legacy"] = bool(enc.get("legacy", d["legacy"]))
    elif enc.get("legacy", d["legacy"]) is not False:
        enc.refuse("legacy", enc.get("legacy", d["legacy"]), "supported: False (legacy=True overwrites the raw xyz "
                   "with the centre offsets; mmdet3d's default is True, so say legacy=False)")
    out["pfn_norm_eps"], out["pfn_norm_momentum"] = _norm(enc, "norm_cfg", ("BN1d",), 1e-3, 0.01)
    enc.ignore(*_TRAINING_ONLY)
    enc.finish()
    return out


def _middle_encoder(mid: _Section, fields: dict) -> None:
    mid.expect("type", ("PointPillarsScatter",))
    mid.same("in_channels", fields["pfn_feat_channels"][-1], "the voxel encoder's last feat_channels")
    nx, ny, _ = voxel_grid(fields["point_cloud_range"], fields["voxel_size"])
    mid.same("output_shape", (ny, nx), "the voxel grid (ny, nx) of point_cloud_range / voxel_size")
    mid.finish()


def _backbone(bb: _Section, pillar_channels: int) -> dict:
    kind = bb.expect("type", ("SECOND", "ConvNeXt_PC"))
    bb.same("in_channels", pillar_channels, "the pillar channels (the voxel encoder's last feat_channels)",
            128 if kind == "SECOND" else 3)
    bb.ignore(*_TRAINING_ONLY)
    if kind == "SECOND":
        out = {
            "backbone": "SECOND",
            "backbone_out_channels": _ints(bb.get("out_channels", (128, 128, 256)), f"{bb.path}.out_channels"),
            "backbone_layer_nums": _ints(bb.get("layer_nums", (3, 5, 5)), f"{bb.path}.layer_nums"),
            "backbone_strides": _ints(bb.get("layer_strides", (2, 2, 2)), f"{bb.path}.layer_strides"),
        }
        out["norm_eps"], out["norm_momentum"] = _norm(bb, "norm_cfg", ("BN", "BN2d"), 1e-3, 0.01)
        conv = bb.section("conv_cfg", {"type": "Conv2d", "bias": False})
        conv.expect("type", ("Conv2d",))
        conv.expect("bias", (False,), False)
        conv.finish()
        bb.finish()
        return out
    channels = list(_ints(bb.get("out_channels"), f"{bb.path}.out_channels"))
    depths = _ints(bb.get("depths"), f"{bb.path}.depths")
    if len(channels) != len(depths):
        bb.refuse("out_channels", channels, f"give one per stage (depths has {len(depths)})")
    channels[0] = pillar_channels  # AWML's ConvNeXt_PC overwrites stage 0's channels with in_channels
    # AWML turns a negative out index i into 4 + i (whatever the number of stages); so does cp_debug
    out_indices = tuple(4 + i if i < 0 else i for i in _ints(bb.get("out_indices", -1), f"{bb.path}.out_indices"))
    bb.expect("gap_before_final_norm", (False,), True)
    bb.expect("large_arch", (None,), None)
    act = bb.section("act_cfg", {"type": "GELU"})
    act.expect("type", ("GELU",))
    act.finish()
    eps, _ = _norm(bb, "norm_cfg", ("LN2d",), 1e-6, None)
    out = {
        "backbone": "ConvNeXt_PC",
        "convnext_channels": tuple(channels),
        "convnext_depths": depths,
        "convnext_out_indices": out_indices,
        "convnext_layer_scale": float(bb.get("layer_scale_init_value", 1e-6)),
        "convnext_norm_eps": eps,
        "convnext_linear_pw_conv": bool(bb.get("linear_pw_conv", True)),
        "convnext_first_downsample": int(bb.get("first_downsample", 1)),
    }
    bb.ignore("stem_patch_size")  # ConvNeXt_PC takes it and never uses it
    bb.finish()
    return out


def _neck(neck: _Section, fields: dict) -> dict:
    neck.expect("type", ("SECONDFPN",))
    if fields["backbone"] == "ConvNeXt_PC":
        levels = tuple(fields["convnext_channels"][i] for i in fields["convnext_out_indices"]
                       if 0 <= i < len(fields["convnext_channels"]))
    else:
        levels = fields["backbone_out_channels"]
    neck.same("in_channels", levels, "the backbone's output channels", (128, 128, 256))
    out = {
        "neck_out_channels": _ints(neck.get("out_channels", (256, 256, 256)), f"{neck.path}.out_channels"),
        "neck_upsample_strides": _floats(neck.get("upsample_strides", (1, 2, 4)), f"{neck.path}.upsample_strides"),
    }
    out["neck_upsample_strides"] = tuple(int(s) if float(s).is_integer() else s for s in out["neck_upsample_strides"])
    eps, momentum = _norm(neck, "norm_cfg", ("BN", "BN2d"), 1e-3, 0.01)
    if fields["backbone"] == "SECOND" and (eps, momentum) != (fields["norm_eps"], fields["norm_momentum"]):
        neck.refuse("norm_cfg", {"eps": eps, "momentum": momentum},
                    f"cp_debug builds the neck's BN as the backbone's (eps {fields['norm_eps']}, momentum "
                    f"{fields['norm_momentum']})")
    out["norm_eps"], out["norm_momentum"] = eps, momentum
    up = neck.section("upsample_cfg", {"type": "deconv", "bias": False})
    up.expect("type", ("deconv",))
    up.expect("bias", (False,), False)
    up.finish()
    conv = neck.section("conv_cfg", {"type": "Conv2d", "bias": False})
    conv.expect("type", ("Conv2d",))
    conv.expect("bias", (False,), False)
    conv.finish()
    neck.expect("use_conv_for_no_stride", (True,), False)
    neck.ignore(*_TRAINING_ONLY)
    neck.finish()
    return out


def _head(head: _Section, fields: dict) -> dict:
    head.expect("type", ("CenterHead", "CenterHeadONNX"))
    head.same("in_channels", sum(fields["neck_out_channels"]), "the sum of the neck's out_channels", 512)
    tasks = head.get("tasks")
    if not isinstance(tasks, (list, tuple)) or len(tasks) != 1:
        head.refuse("tasks", tasks, "cp_debug builds one task (one heatmap head with all classes)")
    task = _Section(tasks[0], f"{head.path}.tasks[0]")
    class_names = tuple(str(c) for c in task.get("class_names"))
    task.same("num_class", len(class_names), "the number of class_names", len(class_names))
    task.finish()
    common = head.get("common_heads")
    order = []
    for key, value in dict(common).items():
        channels, convs = _ints(value, f"{head.path}.common_heads.{key}")
        if convs != 2:
            head.refuse(f"common_heads.{key}", value, "cp_debug builds 2 convs per head (num_conv 2)")
        order.append((key, channels))
    if sorted(order) != sorted(COMMON_HEADS):
        head.refuse("common_heads", dict(common), "supported: " + ", ".join(f"{k}=({c}, 2)" for k, c in COMMON_HEADS))
    head.expect("num_heatmap_convs", (2,), 2)
    sep = head.section("separate_head", {"type": "SeparateHead"})
    sep.expect("type", ("SeparateHead", "CustomSeparateHead", "SeparateHeadONNX"))
    sep.expect("final_kernel", (1,), 1)
    out: dict[str, Any] = {
        "class_names": class_names,
        "common_heads": tuple(order),
        "share_conv_channel": int(head.get("share_conv_channel", 64)),
        "head_conv": int(sep.get("head_conv", 64)),
        "heatmap_init_bias": float(sep.get("init_bias", -2.19)),
        "norm_bbox": bool(head.get("norm_bbox", True)),
    }
    sep.ignore("init_cfg")
    sep.finish()
    out["head_norm_eps"], out["head_norm_momentum"] = _norm(head, "norm_cfg", ("BN2d", "BN"), 1e-5, 0.1)
    conv = head.section("conv_cfg", {"type": "Conv2d"})
    conv.expect("type", ("Conv2d",))
    conv.finish()
    head.expect("bias", ("auto",), "auto")
    coder = head.section("bbox_coder")
    coder.expect("type", ("CenterPointBBoxCoder",), "CenterPointBBoxCoder")
    # the decoder reads pc_range[:2] and voxel_size[:2]
    for key, full in (("pc_range", fields["point_cloud_range"]), ("voxel_size", fields["voxel_size"])):
        value = coder.get(key, full)
        if not isinstance(value, (list, tuple)) or not _equal(tuple(value)[:2], full[:2]):
            coder.refuse(key, value, f"its x, y must equal voxel_layer's ({_show(full[:2])})")
    coder.expect("code_size", (9,), 9)
    out["out_size_factor"] = int(coder.get("out_size_factor"))
    out["post_center_range"] = _floats(coder.get("post_center_range", (-200, -200, -10, 200, 200, 10)),
                                       f"{coder.path}.post_center_range", 6)
    out["score_threshold"] = float(coder.get("score_threshold", 0.1))
    out["max_num"] = int(coder.get("max_num", 500))
    coder.finish()
    head.ignore("test_cfg", *_TRAINING_ONLY)
    head.finish()
    return out


def _test_cfg(test: _Section, fields: dict) -> dict:
    pts = test.section("pts", {})
    test.finish()
    pts.expect("nms_type", ("circle",), "circle")
    radius = pts.get("min_radius", [1.0])
    if not isinstance(radius, (list, tuple)) or len(radius) != 1:
        pts.refuse("min_radius", radius, "give one radius (one task)")
    out = {"nms_dist_sq": float(radius[0]), "post_max_size": int(pts.get("post_max_size", 100))}
    grid = voxel_grid(fields["point_cloud_range"], fields["voxel_size"])
    pts.same("grid_size", grid, "the voxel grid of point_cloud_range / voxel_size", grid)
    pts.same("out_size_factor", fields["out_size_factor"], "bbox_coder.out_size_factor", fields["out_size_factor"])
    pts.same("pc_range", fields["point_cloud_range"][: len(pts.data.get("pc_range", ()))],
             "voxel_layer.point_cloud_range", ())
    pts.same("voxel_size", fields["voxel_size"][: len(pts.data.get("voxel_size", ()))], "voxel_layer.voxel_size", ())
    # read by mmdet3d's rotate NMS only; with circle NMS they change nothing
    pts.ignore("post_center_limit_range", "score_threshold", "nms_thr", "pre_max_size", "max_per_img")
    pts.finish()
    return out


def _pipeline(data: Mapping[str, Any], in_channels: int) -> dict:
    """load_dim, use_dim and the sweeps from the test pipeline (LoadPointsFromFile, then LoadPointsFromMultiSweeps:
    sweeps_num past scans besides the key frame, mmdet3d's default 10; none without that step)."""
    steps = data.get("test_pipeline")
    if steps is None:
        steps = (((data.get("test_dataloader") or {}).get("dataset") or {}).get("pipeline")) or []
    load_dim, use_dim, sweeps = 5, None, {"sweeps_num": 0, "sweeps_remove_close": False}
    for step in steps:
        kind = step.get("type") if isinstance(step, Mapping) else None
        if kind in ("LoadPointsFromFile", "LoadPointsFromMultiSweeps"):
            load_dim = int(step.get("load_dim", 6 if kind == "LoadPointsFromFile" else 5))
            dims = step.get("use_dim", [0, 1, 2] if kind == "LoadPointsFromFile" else [0, 1, 2, 4])
            use_dim = tuple(range(dims)) if isinstance(dims, int) else _ints(dims, f"test_pipeline.{kind}.use_dim")
        if kind == "LoadPointsFromMultiSweeps":
            num = step.get("sweeps_num", 10)
            if not isinstance(num, int) or isinstance(num, bool) or num < 0:
                raise BadInputError(f"test_pipeline.LoadPointsFromMultiSweeps.sweeps_num {num!r}: give a count >= 0")
            sweeps = {"sweeps_num": num, "sweeps_remove_close": bool(step.get("remove_close", False))}
    if use_dim is None:
        use_dim = (0, 1, 2, 4) if in_channels == 4 else tuple(range(in_channels))
    if len(use_dim) != in_channels:
        raise BadInputError(f"test_pipeline's use_dim {list(use_dim)} gives {len(use_dim)} point columns but "
                            f"model.pts_voxel_encoder.in_channels is {in_channels}")
    return {"use_dim": use_dim, "load_dim": load_dim, **sweeps}
