"""`cpdebug lint --recipe transfusion` (TransFusion-L's `lint` plug-in, recipe_contract/recipe.PLUGINS): an AWML
TransFusion config, Autoware's TransFusion parameter files (`autoware_lidar_transfusion`) and the deployed
transfusion.onnx checked against each other.

The node (`lidar_transfusion_node.cpp`, `transfusion_config.hpp`, `network_trt.cpp`) reads flat parameters, keeps
some sizes as constants and refuses an engine whose outputs are not [1, 5, num_proposals], [1, 8, num_proposals] and
[1, 2, num_proposals]. Where the config and the files disagree with the ONNX, the ONNX is what is deployed: its
value comes first in each line, and every other input that disagrees is named beside it. The facts are gathered by
`lint_sources.py`; `lint/checks.agree` compares them as CenterPoint's lint does.
"""

from __future__ import annotations

from cp_debug.lint.checks import _max_voxels, _voxel_cap, agree
from cp_debug.lint.findings import Fact, LintFinding, LintReport
from cp_debug.lint.request import check_request, data_fact, inputs_of
from cp_debug.lint.sources import Facts
from cp_debug.recipes.transfusion.lint_sources import (AUTOWARE_NODE, NODE_INPUTS, NODE_OUTPUTS, NODE_VOXELS_NUM,
                                                       TRANSFUSION_NODE, tf_config_facts, tf_onnx_facts,
                                                       tf_params_facts, transfusion_onnx_path)


def model_config(name: str):
    """The model config lint reads of preset or config file `name`."""
    from cp_debug.models.transfusion.presets import get_preset

    return get_preset(name)


def lint(req) -> LintReport:
    """The TransFusion lint of a `lint.request.LintRequest` (config: a TransFusionConfig; onnx_dir: the folder of
    transfusion.onnx, or the file)."""
    from cp_debug.data.autoware_params import read_params

    check_request(req)
    cfg = tf_config_facts(req.config, req.config_label or req.config.name) if req.config is not None else {}
    params = tf_params_facts(read_params(req.params, AUTOWARE_NODE)) if req.params else {}
    onnx_path = transfusion_onnx_path(req.onnx_dir) if req.onnx_dir is not None else None
    onnx = tf_onnx_facts(onnx_path) if onnx_path is not None else {}
    findings = run_transfusion_checks(cfg, params, onnx, data_fact(req, cfg, params))
    return LintReport(tuple(findings), inputs_of(req, [onnx_path] if onnx_path is not None else []))


def run_transfusion_checks(cfg: Facts, params: Facts, onnx: Facts, data: Fact | None = None) -> list[LintFinding]:
    """Every TransFusion check over the facts of the inputs given (an empty dict for an input not given)."""
    out = [
        _interface(onnx),
        agree("class_names", [cfg.get("class_names"), params.get("class_names")], what="class names and order"),
        agree("num_classes", [onnx.get("num_classes"), params.get("node_num_classes"), params.get("num_classes"),
                              cfg.get("num_classes")], what="number of classes (cls_score0 channels)"),
        agree("point_cloud_range", [cfg.get("point_cloud_range"), params.get("point_cloud_range")],
              what="point cloud range"),
        agree("voxel_size", [cfg.get("voxel_size"), params.get("voxel_size")], what="voxel size"),
        agree("grid", [cfg.get("grid"), params.get("grid")], what="BEV grid (nx, ny)"),
        agree("out_size_factor", [cfg.get("out_size_factor"), params.get("out_size_factor")],
              what="head map downsample factor"),
        agree("points_per_voxel", [onnx.get("points_per_voxel"), params.get("points_per_voxel"),
                                   cfg.get("points_per_voxel")], what="points per voxel"),
        agree("point_features", [onnx.get("point_features"), params.get("point_features"),
                                 cfg.get("point_features")], what="point features"),
        _num_proposals(cfg, params, onnx),
        agree("box_values", [onnx.get("box_values"), params.get("box_values"), cfg.get("box_values")],
              what="box values (bbox_pred0 channels: center, height, dim, vel)"),
        agree("dir_values", [onnx.get("dir_values"), params.get("dir_values"), cfg.get("dir_values")],
              what="rotation values (dir_cls_pred0 channels)"),
        _voxels_num(params, onnx),
        _max_voxels(cfg, params),
    ]
    if data is not None:
        out.append(_voxel_cap(cfg, params, data))
    out += [f for f in (_yaw_norm(params), _score_threshold(params)) if f is not None]
    return out


def _interface(onnx: Facts) -> LintFinding:
    """The node binds its tensors by name and throws on any other (network_trt.cpp nameToNetworkIO)."""
    f = onnx.get("interface")
    if f is None:
        return LintFinding("interface", "skipped", "no transfusion.onnx given")
    ins, outs = f.value
    missing = [n for n in (*NODE_INPUTS, *NODE_OUTPUTS) if n not in (*ins, *outs)]
    extra = [n for n in (*ins, *outs) if n not in (*NODE_INPUTS, *NODE_OUTPUTS)]
    if missing or extra:
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"has {', '.join(extra)}"] if extra else [])
        return LintFinding("interface", "mismatch", f"{f.where} {' and '.join(parts)}; {TRANSFUSION_NODE} binds "
                           f"exactly {', '.join(NODE_INPUTS)} -> {', '.join(NODE_OUTPUTS)} and refuses others", (f,),
                           breaks_comparison=True)
    return LintFinding("interface", "ok", f"{f.where}: {', '.join(ins)} -> {', '.join(outs)}, as the node binds "
                       "them", (f,))


def _num_proposals(cfg: Facts, params: Facts, onnx: Facts) -> LintFinding:
    """The deployed graph's K (each output's last dimension), the node's num_proposals (it refuses an engine of
    another K) and the config's num_proposals (the model a run builds)."""
    graph = [onnx.get(f"num_proposals.{t}") for t in NODE_OUTPUTS]
    found = agree("num_proposals", [*graph, params.get("num_proposals"), cfg.get("num_proposals")],
                  what="number of proposals")
    if not found.failed:
        return found
    given = [f for f in (*graph, params.get("num_proposals"), cfg.get("num_proposals")) if f is not None]
    why = []
    decided = next((f for f in given if f.kind == "onnx"), None)
    for f in given:
        if decided is not None and f.kind == "params" and f.value != decided.value:
            why.append(f"the node checks the engine's outputs against {f.where} and refuses to start")
        if decided is not None and f.kind == "config" and f.value != decided.value:
            why.append(f"{f.where} builds another head than the deployed graph's (set it to {decided.value} or "
                       "re-export)")
    if decided is None:
        why.append("the deployed ONNX decides: give --onnx-dir to see which side is off")
    return LintFinding(found.check, "mismatch", found.message + "; " + "; ".join(why), found.facts,
                       found.breaks_comparison)


def _voxels_num(params: Facts, onnx: Facts) -> LintFinding:
    """voxels_num [min, opt, max]: the TensorRT profile of the graph's voxel axis and the node's voxel cap."""
    f, axis = params.get("voxels_num"), onnx.get("voxel_axis")
    if f is None:
        return LintFinding("voxels_num", "skipped", "no voxels_num given (transfusion_ml_package.param.yaml)",
                           tuple(x for x in (axis,) if x is not None))
    facts = tuple(x for x in (f, axis) if x is not None)
    values = f.value
    if len(values) != 3:
        return LintFinding("voxels_num", "mismatch", f"{list(values)} ({f.where}) is not [min, opt, max]: the node "
                           f"ignores it and keeps {list(NODE_VOXELS_NUM)}", facts)
    lo, opt, hi = values
    if not 0 < lo <= opt <= hi:
        return LintFinding("voxels_num", "mismatch", f"{list(values)} ({f.where}) is not 0 < min ≤ opt ≤ max: "
                           "TensorRT refuses the optimization profile", facts)
    if axis is None:
        return LintFinding("voxels_num", "ok", f"[min, opt, max] {list(values)} ({f.where}); no transfusion.onnx "
                           "given to check its voxel axis against", facts)
    if isinstance(axis.value, int):
        if any(v != axis.value for v in values):
            return LintFinding("voxels_num", "mismatch", f"{list(values)} ({f.where}) ≠ the static voxel axis "
                               f"{axis.value} ({axis.where}): the graph takes only {axis.value} voxels; the profile "
                               "must be that size (or export with a dynamic voxels_num axis)", facts,
                               breaks_comparison=False)
        return LintFinding("voxels_num", "ok", f"{list(values)} ({f.where}) = the static voxel axis {axis.value} "
                           f"({axis.where})", facts)
    return LintFinding("voxels_num", "ok", f"[min, opt, max] {list(values)} ({f.where}) over the dynamic voxel "
                       f"axis {axis.value} ({axis.where})", facts)


def _yaw_norm(params: Facts) -> LintFinding | None:
    yaw, names = params.get("yaw_norm_thresholds"), params.get("class_names")
    if yaw is None:
        return None
    n = names.value if names is not None else None
    if n is not None and len(yaw.value) != len(n):
        return LintFinding("yaw_norm_thresholds", "mismatch", f"{len(yaw.value)} values ({yaw.where}) for {len(n)} "
                           f"classes ({names.where}): one per class", (yaw, names))
    bad = [v for v in yaw.value if not 0.0 <= v < 1.0]
    if bad:
        return LintFinding("yaw_norm_thresholds", "mismatch", f"{bad[0]:g} in {yaw.where} is outside [0, 1): the "
                           "node reads it as 0", (yaw,))
    per = ", ".join(f"{c} {v:g}" for c, v in zip(n, yaw.value)) if n is not None else str(list(yaw.value))
    return LintFinding("yaw_norm_thresholds", "ok" if n is not None else "info",
                       f"yaw vector norm ≥ per class: {per} ({yaw.where})", (yaw, *((names,) if names else ())))


def _score_threshold(params: Facts) -> LintFinding | None:
    f = params.get("score_threshold")
    if f is None:
        return None
    if f.value <= 0.0:
        return LintFinding("score_threshold", "warning", f"{f.value:g} ({f.where}) is not > 0: the node keeps its "
                           "default 0.2 (transfusion_config.hpp)", (f,))
    return LintFinding("score_threshold", "info", f"score threshold {f.value:g} ({f.where})", (f,))
