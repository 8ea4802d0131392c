"""CenterPoint's lint facts (its `lint` plug-in, recipe_contract/recipe.PLUGINS), each with where it came from:

  * the training config (`CenterPointConfig`, from an AWML / autoware-ml config file or a preset): its key paths;
  * Autoware's parameter files (`data/autoware_params.py`), and the node's fixed sizes (32 points per pillar,
    32 pillar channels, the head's channels by has_variance: `centerpoint_config.hpp`, in `autoware_node.py`);
  * the ONNX pair: the voxel encoder's input and output, the backbone's input, its outputs' channels, and the head
    maps' size at a grid (shape inference where the file's grid is dynamic, as AWML exports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from cp_debug.data.autoware_params import AutowareParams
from cp_debug.errors import BadInputError
from cp_debug.lint.findings import Fact
from cp_debug.lint.sources import Facts, _dims, node_grid
from cp_debug.models.centerpoint.config import CenterPointConfig
from cp_debug.recipes.centerpoint.autoware_node import (NODE_HEAD_CHANNELS, NODE_PILLAR_CHANNELS,
                                                        NODE_POINTS_PER_PILLAR, NODE_VARIANCE_CHANNELS)

_NODE = "autoware_lidar_centerpoint (centerpoint_config.hpp)"


def config_facts(cfg: CenterPointConfig, label: str) -> Facts:
    """What the training config fixes, at the key paths of an AWML config."""
    def at(key: str, value) -> Fact:
        return Fact(value, f"{label}:{key}", "config")

    vl = "model.data_preprocessor.voxel_layer"
    heads = "model.pts_bbox_head"
    return {
        "class_names": at(f"{heads}.tasks[0].class_names", tuple(cfg.class_names)),
        "point_feature_size": at("model.pts_voxel_encoder.in_channels", cfg.in_channels),
        "encoder_in_feature_size": at("model.pts_voxel_encoder (in_channels + decorations)", cfg.decorated_channels),
        "point_cloud_range": at(f"{vl}.point_cloud_range", tuple(cfg.point_cloud_range)),
        "voxel_size": at(f"{vl}.voxel_size", tuple(cfg.voxel_size)),
        "grid": at(f"{vl} (range / voxel_size, rounded)", tuple(cfg.grid_size)),
        "downsample_factor": at(f"{heads}.bbox_coder.out_size_factor", cfg.out_size_factor),
        "max_voxels": at(f"{vl}.max_voxels", cfg.max_voxels),
        "points_per_pillar": at(f"{vl}.max_num_points", cfg.max_num_points),
        "pillar_channels": at("model.pts_voxel_encoder.feat_channels[-1]", cfg.pillar_channels),
        "head_channels": at(f"{heads}.common_heads", cfg.head_channels()),
        "score_threshold": at(f"{heads}.bbox_coder.score_threshold", cfg.score_threshold),
        "nms_radius": at("model.test_cfg.pts.min_radius", cfg.nms_dist_sq),
    }


def params_facts(params: AutowareParams) -> Facts:
    """What the node reads from the files, plus its fixed sizes and the grid it computes."""
    out: Facts = {}

    def put(name: str, p) -> None:
        if p is not None:
            out[name] = Fact(p.value, p.where, "params")

    put("class_names", params.class_names)
    put("point_feature_size", params.ints("model_params.point_feature_size"))
    put("encoder_in_feature_size", params.ints("model_params.encoder_in_feature_size"))
    put("point_cloud_range", params.floats("model_params.point_cloud_range", 6))
    put("voxel_size", params.floats("model_params.voxel_size", 3))
    put("downsample_factor", params.ints("model_params.downsample_factor"))
    put("max_voxels", params.ints("model_params.max_voxel_size"))
    put("has_variance", params.flag("model_params.has_variance"))
    put("has_twist", params.flag("model_params.has_twist"))
    if "point_cloud_range" in out and "voxel_size" in out:
        out["grid"] = Fact(node_grid(out["point_cloud_range"].value, out["voxel_size"].value),
                           f"{out['voxel_size'].where.split(':')[0]}:model_params (the node's grid: range / "
                           "voxel_size, truncated)", "params")
    if out:  # the node's constants join as soon as it is in the picture
        out["points_per_pillar"] = Fact(NODE_POINTS_PER_PILLAR, f"{_NODE}: max_point_in_voxel_size_", "node")
        out["pillar_channels"] = Fact(NODE_PILLAR_CHANNELS, f"{_NODE}: encoder_out_feature_size_", "node")
        variance = bool(out["has_variance"].value) if "has_variance" in out else False
        table = NODE_VARIANCE_CHANNELS if variance else NODE_HEAD_CHANNELS
        where = out["has_variance"].where if "has_variance" in out else f"{_NODE}: has_variance_ default"
        out["node_head_channels"] = Fact({k: v for k, v in table.items() if v is not None},
                                         f"{where} ({'with' if variance else 'no'} variance)", "params")
    return out


@dataclass(frozen=True)
class PairFiles:
    """The two files of a deployed folder (`data/model_folder.py` names them) and the models read from them."""

    folder: Path
    encoder: Path
    backbone: Path
    encoder_model: object = field(repr=False, default=None)
    backbone_model: object = field(repr=False, default=None)


def read_pair(folder: str | Path) -> PairFiles:
    from cp_debug.data.model_folder import STAGES, expected_names, stage_file
    from cp_debug.graph.model import load_onnx

    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"--onnx {folder} is not a folder (give the folder of the deployed pair)")
    files = [stage_file(folder, s, what=f"--onnx {folder}") for s in STAGES]
    missing = [s for s, f in zip(STAGES, files) if f is None]
    if missing:
        raise BadInputError(f"--onnx {folder} has no {missing[0]} file (it must hold {expected_names()})")
    enc, bb = files
    return PairFiles(folder, enc, bb, load_onnx(enc), load_onnx(bb))


def onnx_facts(pair: PairFiles, grid: tuple[int, int] | None) -> Facts:
    """The sizes the pair fixes. `grid` (nx, ny): where the backbone's input is dynamic, the head maps' size is
    found by shape inference at this grid (the params' or the config's)."""
    out: Facts = {}
    enc, bb = pair.encoder_model, pair.backbone_model
    ename, bname = pair.encoder.name, pair.backbone.name
    e_in = _dims(enc.graph.input[0])
    if len(e_in) == 3 and isinstance(e_in[2], int):
        out["encoder_in_feature_size"] = Fact(e_in[2], f"{ename}:{enc.graph.input[0].name}[2]", "onnx")
    if len(e_in) == 3 and isinstance(e_in[1], int):
        out["points_per_pillar"] = Fact(e_in[1], f"{ename}:{enc.graph.input[0].name}[1]", "onnx")
    e_out = _dims(enc.graph.output[0])
    if e_out and isinstance(e_out[-1], int):
        out["pillar_channels"] = Fact(e_out[-1], f"{ename}:{enc.graph.output[0].name}[-1]", "onnx")
    b_in = _dims(bb.graph.input[0])
    if len(b_in) == 4 and isinstance(b_in[1], int):
        out["backbone_in_channels"] = Fact(b_in[1], f"{bname}:{bb.graph.input[0].name}[1]", "onnx")
    static = len(b_in) == 4 and isinstance(b_in[2], int) and isinstance(b_in[3], int)
    if static:
        out["grid"] = Fact((b_in[3], b_in[2]), f"{bname}:{bb.graph.input[0].name}[3], [2]", "onnx")
    heads = {o.name: _dims(o) for o in bb.graph.output}
    channels = {n: d[1] for n, d in heads.items() if len(d) == 4 and isinstance(d[1], int)}
    if channels:
        out["head_channels"] = Fact(channels, f"{bname}: outputs' channels", "onnx")
    if "heatmap" in channels:
        out["num_classes"] = Fact(channels["heatmap"], f"{bname}:heatmap[1]", "onnx")
    at = (b_in[3], b_in[2]) if static else grid
    if at is not None and "heatmap" in heads:
        size = _head_map_size(bb, at)
        if size is not None and size[0] > 0 and at[0] % size[0] == 0 and at[1] % size[1] == 0:
            how = "" if static else f" at the grid {at[0]}×{at[1]} (shape inference)"
            out["downsample_factor"] = Fact(at[0] // size[0], f"{bname}: spatial_features ÷ heatmap{how}", "onnx")
            out["head_map"] = Fact(size, f"{bname}:heatmap[3], [2]{how}", "onnx")
    return out


def _head_map_size(model, grid: tuple[int, int]) -> tuple[int, int] | None:
    """(width, height) of `heatmap` when the backbone takes a (1, C, ny, nx) input: ONNX shape inference on a copy
    with that input shape and the outputs' shapes cleared."""
    import copy

    import onnx

    m = copy.deepcopy(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return None
    for d, v in zip(dims, (1, dims[1].dim_value or 32, grid[1], grid[0])):
        d.Clear()
        d.dim_value = int(v)
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001 - a graph shape inference cannot follow: the factor stays unchecked
        return None
    for o in m.graph.output:
        if o.name == "heatmap":
            d = _dims(o)
            if len(d) == 4 and isinstance(d[2], int) and isinstance(d[3], int):
                return d[3], d[2]
    return None
