"""CenterPoint's part of `cpdebug lint` (its `lint` plug-in, recipe_contract/recipe.PLUGINS): a training config,
Autoware's parameter files (`autoware_lidar_centerpoint`) and the deployed pair checked against each other — the
facts gathered by `lint_sources.py`, compared by `lint/checks.agree` into one `LintFinding` per check (`run_checks`).
"""

from __future__ import annotations


from cp_debug.data.autoware_params import AutowareParams
from cp_debug.lint.checks import _max_voxels, _show, _voxel_cap, agree
from cp_debug.lint.findings import Fact, LintFinding, LintReport
from cp_debug.lint.request import LintRequest, check_request, data_fact, inputs_of
from cp_debug.lint.sources import Facts


def model_config(name: str):
    """The model config lint reads of preset or config file `name`."""
    from cp_debug.models.centerpoint.presets import get_preset

    return get_preset(name)


def lint(req: LintRequest) -> LintReport:
    """The lint of a CenterPoint training config, Autoware's parameter files and a deployed pair."""
    from cp_debug.data.autoware_params import read_params
    from cp_debug.recipes.centerpoint.autoware_node import AUTOWARE_NODE
    from cp_debug.recipes.centerpoint.lint_sources import config_facts, onnx_facts, params_facts, read_pair

    check_request(req)
    autoware = read_params(req.params, AUTOWARE_NODE) if req.params else None
    cfg = config_facts(req.config, req.config_label or req.config.name) if req.config is not None else {}
    params = params_facts(autoware) if autoware is not None else {}
    pair = read_pair(req.onnx_dir) if req.onnx_dir is not None else None
    grid = params.get("grid") or cfg.get("grid")
    onnx = onnx_facts(pair, grid.value if grid is not None else None) if pair is not None else {}
    findings = run_checks(cfg, params, onnx, autoware, data_fact(req, cfg, params))
    return LintReport(tuple(findings), inputs_of(req, [pair.encoder, pair.backbone] if pair is not None else []))


def run_checks(cfg: Facts, params: Facts, onnx: Facts, autoware: AutowareParams | None,
               data: Fact | None = None) -> list[LintFinding]:
    """Every check over the facts of the inputs given (an empty dict for an input not given)."""
    out = [
        agree("class_names", [cfg.get("class_names"), params.get("class_names")], what="class names and order"),
        _class_count(cfg, params, onnx),
        agree("point_feature_size", [cfg.get("point_feature_size"), params.get("point_feature_size")],
              what="point features per point"),
        agree("encoder_in_feature_size", [cfg.get("encoder_in_feature_size"), params.get("encoder_in_feature_size"),
                                          onnx.get("encoder_in_feature_size")], what="voxel encoder input channels"),
        agree("point_cloud_range", [cfg.get("point_cloud_range"), params.get("point_cloud_range")],
              what="point cloud range"),
        agree("voxel_size", [cfg.get("voxel_size"), params.get("voxel_size")], what="voxel size"),
        agree("grid", [cfg.get("grid"), params.get("grid"), onnx.get("grid")], what="BEV grid (nx, ny)"),
        agree("downsample_factor", [cfg.get("downsample_factor"), params.get("downsample_factor"),
                                    onnx.get("downsample_factor")], what="head map downsample factor"),
        agree("points_per_pillar", [cfg.get("points_per_pillar"), params.get("points_per_pillar"),
                                    onnx.get("points_per_pillar")], what="points per pillar"),
        agree("pillar_channels", [cfg.get("pillar_channels"), params.get("pillar_channels"),
                                  onnx.get("pillar_channels"), onnx.get("backbone_in_channels")],
              what="pillar feature channels"),
        _head_channels(cfg, params, onnx),
        _twist(cfg, params, onnx),
        _max_voxels(cfg, params),
    ]
    if data is not None:
        out.append(_voxel_cap(cfg, params, data))
    if autoware is not None:
        out += _thresholds(cfg, params, autoware)
    return out


def _class_count(cfg: Facts, params: Facts, onnx: Facts) -> LintFinding:
    counted = [Fact(len(f.value), f.where, f.kind) if f is not None else None
               for f in (cfg.get("class_names"), params.get("class_names"))]
    return agree("num_classes", [*counted, onnx.get("num_classes")], what="number of classes (heatmap channels)")


def _head_channels(cfg: Facts, params: Facts, onnx: Facts) -> LintFinding:
    """The regression heads' channels: the config builds them without variance; the node reads 2/1/3/2/2, or
    4/2/6/4/4 with has_variance; the ONNX file has what it has (heatmap compared by num_classes)."""
    def regs(f: Fact | None) -> Fact | None:
        if f is None:
            return None
        return Fact({k: v for k, v in f.value.items() if k != "heatmap"}, f.where, f.kind)

    return agree("head_channels", [regs(cfg.get("head_channels")), regs(params.get("node_head_channels")),
                                   regs(onnx.get("head_channels"))], what="head output channels (has_variance)")


def _twist(cfg: Facts, params: Facts, onnx: Facts) -> LintFinding:
    """has_twist: true publishes the vel head's output: the model must have one."""
    twist = params.get("has_twist")
    heads = [f for f in (onnx.get("head_channels"), cfg.get("head_channels")) if f is not None]
    if twist is None or not heads:
        return LintFinding("has_twist", "skipped", "needs has_twist and the config or the ONNX pair",
                           tuple(f for f in (twist, *heads) if f is not None))
    lacking = [f for f in heads if "vel" not in f.value]
    if twist.value and lacking:
        return LintFinding("has_twist", "mismatch", f"has_twist true ({twist.where}) but no vel head in "
                           + " and ".join(f.where for f in lacking) + ": the node reads velocity the model does not "
                           "predict", (twist, *heads))
    if not twist.value and not lacking:
        return LintFinding("has_twist", "ok", f"has_twist false ({twist.where}): the vel head's output is not "
                           "published", (twist, *heads))
    return LintFinding("has_twist", "ok", f"has_twist {str(twist.value).lower()} ({twist.where}) with "
                       f"{'a' if not lacking else 'no'} vel head", (twist, *heads))


def _thresholds(cfg: Facts, params: Facts, autoware: AutowareParams) -> list[LintFinding]:
    """Score, yaw-norm and NMS thresholds as the node decodes them, next to the config's."""
    out = []
    names = params.get("class_names")
    table = autoware.score_thresholds()
    conf = cfg.get("score_threshold")
    if table is not None and names is not None:
        facts = (Fact(table.table, table.where, "params"),) + ((conf,) if conf is not None else ())
        text = table.describe(names.value) + f" ({table.layout}, {table.where})"
        if conf is not None:
            text += f"; training decodes at score ≥ {conf.value:g} ({conf.where})"
        out.append(LintFinding("score_thresholds", "info", text, facts))
        if table.clamped:
            w, v = table.clamped[0]
            out.append(LintFinding("score_thresholds_range", "mismatch", f"{w} = {v:g} is outside [0, 1): the node "
                                   f"reads it as 0 and keeps every box ({len(table.clamped)} such value(s))", facts))
    yaw = autoware.yaw_norm_thresholds()
    if yaw is not None:
        bad = [v for v in yaw.value if not 0.0 <= v < 1.0]
        if names is not None and len(yaw.value) != len(names.value):
            out.append(LintFinding("yaw_norm_thresholds", "mismatch",
                                   f"{len(yaw.value)} values ({yaw.where}) for {len(names.value)} classes "
                                   f"({names.where}): one per class", (Fact(yaw.value, yaw.where, "params"), names)))
        elif bad:
            out.append(LintFinding("yaw_norm_thresholds", "mismatch", f"{_show(bad[0])} in {yaw.where} is outside "
                                   "[0, 1): the node reads it as 0", (Fact(yaw.value, yaw.where, "params"),)))
        else:
            out.append(LintFinding("yaw_norm_thresholds", "info", f"yaw vector norm ≥ {_show(tuple(yaw.value))} "
                                   f"per class ({yaw.where})", (Fact(yaw.value, yaw.where, "params"),)))
    nms = [autoware.number(k) for k in ("post_process_params.circle_nms_dist_threshold",
                                        "post_process_params.iou_nms_threshold",
                                        "post_process_params.iou_nms_search_distance_2d")]
    if any(p is not None for p in nms):
        circle, iou, dist = nms
        parts = []
        if circle is not None:
            parts.append(f"circle NMS within {circle.value:g} m ({circle.where})")
        if iou is not None:
            near = f" of boxes within {dist.value:g} m" if dist is not None else ""
            parts.append(f"BEV IoU NMS at IoU > {iou.value:g}{near} ({iou.where})")
        radius = cfg.get("nms_radius")
        if radius is not None:
            parts.append(f"training: circle NMS at squared distance ≤ {radius.value:g} ({radius.where})")
        facts = tuple(Fact(p.value, p.where, "params") for p in nms if p is not None)
        out.append(LintFinding("nms", "info", "; ".join(parts), facts + ((radius,) if radius is not None else ())))
    return out
