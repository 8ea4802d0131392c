"""The facts `cpdebug lint --recipe transfusion` compares, under one set of names, each with where it came from.

  * the training config (`TransFusionConfig`, from an AWML TransFusion config file or a preset): its key paths;
  * Autoware's TransFusion parameter files (`autoware_lidar_transfusion`: transfusion.param.yaml and
    transfusion_ml_package.param.yaml, flat names as `src/lidar_transfusion_node.cpp` declares them), and the
    node's fixed sizes (`transfusion_config.hpp`: 5 classes, 20 points per voxel, 5 point features, out_size_factor
    4, 8 box values; `network_trt.cpp` checks the engine's outputs against them and against num_proposals);
  * the deployed `transfusion.onnx`: its inputs' and outputs' dimensions (voxels [N, 20, 5] with N the dynamic
    `voxels_num` axis, cls_score0 [1, classes, K], bbox_pred0 [1, 8, K], dir_cls_pred0 [1, 2, K]).
"""

from __future__ import annotations

from pathlib import Path

from cp_debug.data.autoware_params import AutowareNode, AutowareParams, Param
from cp_debug.errors import BadInputError
from cp_debug.lint.findings import Fact
from cp_debug.lint.sources import Facts, _dims, node_grid

TRANSFUSION_NODE = "autoware_lidar_transfusion (transfusion_config.hpp)"
# autoware_lidar_transfusion declares flat names (src/lidar_transfusion_node.cpp): a file holding none of them is not
# the node's parameter file (`read_params`)
AUTOWARE_NODE = AutowareNode("TransFusion", frozenset({
    "class_names", "trt_precision", "voxels_num", "point_cloud_range", "voxel_size", "num_proposals", "onnx_path",
    "engine_path", "densification_world_frame_id", "densification_num_past_frames", "circle_nms_dist_threshold",
    "iou_nms_target_class_names", "iou_nms_search_distance_2d", "iou_nms_threshold", "yaw_norm_thresholds",
    "score_threshold", "allow_remapping_by_area_matrix", "min_area_matrix", "max_area_matrix"}))
# the node's constants (transfusion_config.hpp) that the engine's shapes are checked against (network_trt.cpp)
NODE_NUM_CLASSES = 5
NODE_POINTS_PER_VOXEL = 20
NODE_POINT_FEATURES = 5
NODE_OUT_SIZE_FACTOR = 4
NODE_BOX_VALUES = 8
NODE_DIR_VALUES = 2
NODE_VOXELS_NUM = (5000, 30000, 60000)  # what it keeps when voxels_num is not three values
# the graph's names the node binds (network_trt.cpp nameToNetworkIO)
NODE_INPUTS = ("voxels", "num_points", "coors")
NODE_OUTPUTS = ("cls_score0", "bbox_pred0", "dir_cls_pred0")
ONNX_FILE = "transfusion.onnx"


def tf_config_facts(cfg, label: str) -> Facts:
    """What the TransFusion training config fixes, at the key paths of an AWML config."""
    def at(key: str, value) -> Fact:
        return Fact(value, f"{label}:{key}", "config")

    vl = "model.data_preprocessor.voxel_layer"
    head = "model.pts_bbox_head"
    heads = dict(cfg.common_heads)
    box = {k: v for k, v in heads.items() if k != "rot"}
    return {
        "class_names": at("class_names", tuple(cfg.class_names)),
        "num_classes": at(f"{head}.num_classes", cfg.num_classes),
        "point_cloud_range": at(f"{vl}.point_cloud_range", tuple(cfg.point_cloud_range)),
        "voxel_size": at(f"{vl}.voxel_size", tuple(cfg.voxel_size)),
        "grid": at(f"{vl} (range / voxel_size, rounded)", tuple(cfg.grid_size)),
        "max_voxels": at(f"{vl}.max_voxels", cfg.max_voxels),
        "points_per_voxel": at(f"{vl}.max_num_points", cfg.max_num_points),
        "point_features": at("model.pts_voxel_encoder.in_channels", cfg.in_channels),
        "out_size_factor": at(f"{head}.bbox_coder.out_size_factor", cfg.out_size_factor),
        "num_proposals": at(f"{head}.num_proposals", cfg.num_proposals),
        "box_values": at(f"{head}.common_heads {box} (all but rot)", sum(box.values())),
        "dir_values": at(f"{head}.common_heads.rot", heads.get("rot", 0)),
    }


def tf_params_facts(params: AutowareParams) -> Facts:
    """What the TransFusion node reads from its files, its fixed sizes, and the grid it computes."""
    out: Facts = {}

    def put(name: str, p: Param | None) -> None:
        if p is not None:
            out[name] = Fact(p.value, p.where, "params")

    names = params.get("class_names")
    if names is not None:
        if not isinstance(names.value, list) or not all(isinstance(c, str) for c in names.value):
            raise BadInputError(f"{names.where} = {names.value!r} must be a list of class names")
        out["class_names"] = Fact(tuple(names.value), names.where, "params")
        out["num_classes"] = Fact(len(names.value), f"{names.where} (count)", "params")
    put("point_cloud_range", params.floats("point_cloud_range", 6))
    put("voxel_size", params.floats("voxel_size", 3))
    put("num_proposals", params.ints("num_proposals"))
    voxels = params.get("voxels_num")
    if voxels is not None:
        values = voxels.value
        if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise BadInputError(f"{voxels.where} = {values!r} must be a list of integers [min, opt, max]")
        out["voxels_num"] = Fact(tuple(values), voxels.where, "params")
        if len(values) == 3:
            out["max_voxels"] = Fact(values[2], f"{voxels.where}[2]", "params")
    put("yaw_norm_thresholds", params.floats("yaw_norm_thresholds"))
    put("score_threshold", params.number("score_threshold"))
    if "point_cloud_range" in out and "voxel_size" in out:
        out["grid"] = Fact(node_grid(out["point_cloud_range"].value, out["voxel_size"].value),
                           f"{out['voxel_size'].where.split(':')[0]} (the node's grid: range / voxel_size, truncated)",
                           "params")
    if out:  # the node's constants join as soon as it is in the picture
        for name, value, member in (("node_num_classes", NODE_NUM_CLASSES, "num_classes_"),
                                    ("points_per_voxel", NODE_POINTS_PER_VOXEL, "points_per_voxel_"),
                                    ("point_features", NODE_POINT_FEATURES, "num_point_feature_size_"),
                                    ("out_size_factor", NODE_OUT_SIZE_FACTOR, "out_size_factor_"),
                                    ("box_values", NODE_BOX_VALUES, "num_box_values_"),
                                    ("dir_values", NODE_DIR_VALUES, "dir_cls_pred0's 2 (x, y)")):
            out[name] = Fact(value, f"{TRANSFUSION_NODE}: {member}", "node")
    return out


def transfusion_onnx_path(path: str | Path) -> Path:
    """The deployed graph: `path` itself (a .onnx file) or the folder's transfusion.onnx."""
    path = Path(path)
    if path.is_dir():
        path = path / ONNX_FILE
        if not path.is_file():
            raise BadInputError(f"--onnx-dir {path.parent} has no {ONNX_FILE} (write one with `cpdebug export "
                                "--recipe transfusion --out DIR`)")
    elif not path.is_file():
        raise BadInputError(f"--onnx-dir {path}: no such folder or file (give the folder of {ONNX_FILE})")
    return path


def tf_onnx_facts(path: Path) -> Facts:
    """The sizes the deployed transfusion.onnx fixes, by the tensor names the node binds."""
    from cp_debug.graph.model import load_onnx

    model = load_onnx(path)
    name = path.name
    ins = {i.name: _dims(i) for i in model.graph.input}
    outs = {o.name: _dims(o) for o in model.graph.output}
    out: Facts = {"interface": Fact((tuple(ins), tuple(outs)), f"{name}: inputs, outputs", "onnx")}

    def dim(tensor: str, shapes: dict, i: int, fact: str) -> None:
        d = shapes.get(tensor)
        if d is not None and len(d) > i and d[i] is not None:
            out[fact] = Fact(d[i], f"{name}:{tensor}[{i}]", "onnx")

    dim("voxels", ins, 0, "voxel_axis")
    dim("voxels", ins, 1, "points_per_voxel")
    dim("voxels", ins, 2, "point_features")
    dim("cls_score0", outs, 1, "num_classes")
    dim("bbox_pred0", outs, 1, "box_values")
    dim("dir_cls_pred0", outs, 1, "dir_values")
    for tensor in NODE_OUTPUTS:
        dim(tensor, outs, 2, f"num_proposals.{tensor}")
    return out
