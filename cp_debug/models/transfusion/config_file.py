"""AWML TransFusion config files (mmengine syntax) -> `TransFusionConfig`, or one line saying what cannot be built.

The file is read as CenterPoint's are (`centerpoint.config_file.load_config_dict`: mmengine's `Config.fromfile`
with the `_base_` chain and mmengine's merge, custom_imports never imported), and the parts TransFusion shares
with CenterPoint (voxel layer, PillarFeatureNet, scatter, SECOND, SECONDFPN, test pipeline) by CenterPoint's own
section readers; the head, its bbox coder and test_cfg are read here. As there, every key under `model` is built,
checked, or known to matter only for training; anything else is a BadInputError naming its key path.

num_classes is `model.pts_bbox_head.num_classes` (AWML's T4 configs set it from `_base_.num_class`); the class
names are the file's top-level `class_names` (the dataset base's), which must agree with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint import config_file as cp
from cp_debug.models.transfusion.config import TransFusionConfig

# AWML TransFusionHead's defaults, for the keys a config leaves out
_HEAD_DEFAULTS = {"num_proposals": 128, "auxiliary": True, "in_channels": 384, "hidden_channel": 128,
                  "num_classes": 4, "num_decoder_layers": 3, "nms_kernel_size": 1, "bn_momentum": 0.1,
                  "num_heatmap_convs": 2}
MODEL_TYPES = ("TransFusion",)  # the config's model.type this reader builds (recipes.catalog asks)
_TRAINING_ONLY = ("loss_cls", "loss_bbox", "loss_heatmap", "train_cfg", "init_cfg")


def read_config(path: str | Path) -> TransFusionConfig:
    """The TransFusion that the AWML config file at `path` describes (named after the file's stem); needs mmengine."""
    data = cp.load_config_dict(path)
    return config_from_dict(data, name=Path(path).stem, description=str(data.get("cp_debug_description") or ""))


def config_from_dict(data: Mapping[str, Any], name: str, description: str = "") -> TransFusionConfig:
    """The typed config from a config file's dict (what `Config.fromfile(...).to_dict()` gives)."""
    if "model" not in data:
        raise BadInputError(f"config {name!r} has no `model`: cp_debug builds the model from model=dict(...)")
    model = cp._Section(data["model"], "model")
    model.expect("type", MODEL_TYPES)
    fields: dict[str, Any] = {"name": name, "description": description or f"config file {name}"}
    fields.update(cp._voxel_layer(model.section("data_preprocessor")))
    encoder = cp._voxel_encoder(model.section("pts_voxel_encoder"), fields, legacy_ok=True)
    if encoder.pop("voxel_encoder") != "PillarFeatureNet":
        raise BadInputError(f"model.pts_voxel_encoder.type = {data['model']['pts_voxel_encoder'].get('type')!r} is "
                            "not built by cp_debug for TransFusion; supported: 'PillarFeatureNet'")
    fields.update(encoder)
    _check_second(model.section("pts_backbone"))
    fields.update(cp._backbone(model.section("pts_backbone"), fields["pfn_feat_channels"][-1]))
    cp._middle_encoder(model.section("pts_middle_encoder"), fields)
    fields.update(cp._neck(model.section("pts_neck"), fields))
    fields.pop("backbone")
    fields.update(_head(model.section("pts_bbox_head"), fields, data.get("class_names")))
    fields.update(_test_cfg(model.section("test_cfg", {}), fields))
    model.ignore("train_cfg", "init_cfg")
    model.finish()
    fields.update(cp._pipeline(data, fields["in_channels"]))
    return TransFusionConfig(**fields)


def _check_second(bb: cp._Section) -> None:
    bb.expect("type", ("SECOND",))


def _head(head: cp._Section, fields: dict, class_names: Any) -> dict:
    d = _HEAD_DEFAULTS
    head.expect("type", ("TransFusionHead",))
    head.same("in_channels", sum(fields["neck_out_channels"]), "the sum of the neck's out_channels", d["in_channels"])
    hidden = int(head.get("hidden_channel", d["hidden_channel"]))
    num_classes = int(head.get("num_classes", d["num_classes"]))
    names = _class_names(class_names, num_classes, head.path)
    loss_cls = head.section("loss_cls", {})
    loss_cls.expect("use_sigmoid", (True,), False)  # without it AWML adds a background class to some layers only
    loss_cls.ignore(*loss_cls.data)
    out: dict[str, Any] = {
        "class_names": names,
        "num_proposals": int(head.get("num_proposals", d["num_proposals"])),
        "auxiliary": bool(head.get("auxiliary", d["auxiliary"])),
        "hidden_channel": hidden,
        "num_decoder_layers": int(head.get("num_decoder_layers", d["num_decoder_layers"])),
        "nms_kernel_size": int(head.get("nms_kernel_size", d["nms_kernel_size"])),
        "bn_momentum": float(head.get("bn_momentum", d["bn_momentum"])),
    }
    head.ignore("num_heads")  # TransFusionHead stores it and never uses it: the decoder layer's config counts
    head.expect("num_heatmap_convs", (2,), d["num_heatmap_convs"])
    head.expect("bias", ("auto",), "auto")
    conv = head.section("conv_cfg", {"type": "Conv1d"})
    conv.expect("type", ("Conv1d",))
    conv.finish()
    out["head_norm_eps"], _ = cp._norm(head, "norm_cfg", ("BN1d",), 1e-5, 0.1)  # momentum: bn_momentum's
    out.update(_decoder_layer(head.section("decoder_layer"), hidden))
    out["common_heads"] = _common_heads(head)
    out.update(_bbox_coder(head.section("bbox_coder"), fields, out["common_heads"]))
    head.ignore(*_TRAINING_ONLY, "test_cfg")
    head.finish()
    return out


def _class_names(class_names: Any, num_classes: int, path: str) -> tuple[str, ...]:
    if class_names is None:
        return tuple(f"class_{i}" for i in range(num_classes))
    names = tuple(str(c) for c in class_names)
    if len(names) != num_classes:
        raise BadInputError(f"{path}.num_classes = {num_classes} but the config's class_names has {len(names)} "
                            f"({', '.join(names)}): the heatmap channels would be misnamed")
    return names


def _decoder_layer(layer: cp._Section, hidden: int) -> dict:
    layer.expect("type", ("TransformerDecoderLayer",))
    heads = None
    for key in ("self_attn_cfg", "cross_attn_cfg"):
        attn = layer.section(key)
        attn.same("embed_dims", hidden, "the head's hidden_channel")
        n = int(attn.get("num_heads"))
        if heads is not None and n != heads:
            attn.refuse("num_heads", n, f"cp_debug builds the same number of heads as self_attn_cfg ({heads})")
        heads = n
        attn.expect("batch_first", (True,), True)
        attn.ignore("dropout", "attn_drop", "proj_drop")  # identity in eval mode
        attn.finish()
    ffn = layer.section("ffn_cfg")
    ffn.same("embed_dims", hidden, "the head's hidden_channel")
    ffn.expect("num_fcs", (2,), 2)
    act = ffn.section("act_cfg", {"type": "ReLU"})
    act.expect("type", ("ReLU",))
    act.ignore("inplace")
    act.finish()
    ffn_channels = int(ffn.get("feedforward_channels", 1024))
    ffn.ignore("ffn_drop")
    ffn.finish()
    norm = layer.section("norm_cfg", {"type": "LN"})
    norm.expect("type", ("LN",))
    eps = float(norm.get("eps", 1e-5))
    norm.finish()
    pos = layer.section("pos_encoding_cfg", {"input_channel": 2, "num_pos_feats": 128})
    pos.same("num_pos_feats", hidden, "the head's hidden_channel (the embedding is added to the query)")
    pos_in = int(pos.get("input_channel", 2))
    if pos_in != 2:
        pos.refuse("input_channel", pos_in, "the BEV positions have 2 coordinates")
    pos.finish()
    layer.finish()
    return {"num_attn_heads": heads, "ffn_channels": ffn_channels, "layer_norm_eps": eps, "pos_input_channel": pos_in}


def _common_heads(head: cp._Section) -> tuple[tuple[str, int], ...]:
    common = head.get("common_heads")
    if not isinstance(common, Mapping):
        head.refuse("common_heads", common, "give a dict name=(channels, num_conv)")
    out = []
    for key, value in common.items():
        channels, convs = cp._ints(value, f"{head.path}.common_heads.{key}")
        if convs != 2:
            head.refuse(f"common_heads.{key}", value, "cp_debug builds 2 convs per head (num_conv 2)")
        out.append((str(key), channels))
    for key in ("center", "height", "dim", "rot"):
        if key not in common:
            head.refuse("common_heads", dict(common), f"the decoder needs center, height, dim and rot ({key} missing)")
    return tuple(out)


def _bbox_coder(coder: cp._Section, fields: dict, common_heads) -> dict:
    coder.expect("type", ("TransFusionBBoxCoder",))
    for key, full in (("pc_range", fields["point_cloud_range"]), ("voxel_size", fields["voxel_size"])):
        value = coder.get(key)
        if not isinstance(value, (list, tuple)) or not cp._equal(tuple(value)[:2], full[:2]):
            coder.refuse(key, value, f"its x, y must equal voxel_layer's ({cp._show(full[:2])})")
    code_size = 10 if "vel" in dict(common_heads) else 8
    coder.expect("code_size", (code_size,), 8)
    post = coder.get("post_center_range", None)
    threshold = coder.get("score_threshold", None)
    out = {
        "out_size_factor": int(coder.get("out_size_factor")),
        "post_center_range": None if post is None else cp._floats(post, f"{coder.path}.post_center_range", 6),
        "score_threshold": None if threshold is None else float(threshold),
    }
    coder.finish()
    return out


def _test_cfg(test: cp._Section, fields: dict) -> dict:
    pts = test.section("pts")
    test.finish()
    pts.expect("nms_type", (None,), None)
    grid = cp.voxel_grid(fields["point_cloud_range"], fields["voxel_size"])
    pts.same("grid_size", grid, "the voxel grid of point_cloud_range / voxel_size (the head's BEV positions)")
    pts.same("out_size_factor", fields["out_size_factor"], "bbox_coder.out_size_factor")
    pts.same("pc_range", fields["point_cloud_range"][: len(pts.data.get("pc_range", ()))],
             "voxel_layer.point_cloud_range", ())
    pts.same("voxel_size", fields["voxel_size"][: len(pts.data.get("voxel_size", ()))], "voxel_layer.voxel_size", ())
    out = {"dataset": str(pts.get("dataset", "nuScenes"))}
    pts.ignore("pre_max_size", "post_max_size", "score_threshold", "nms_thr")  # read by NMS only, off here
    pts.finish()
    return out
