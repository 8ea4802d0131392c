"""Export TransFusion-L as Autoware deploys it: one file, `transfusion.onnx` (autoware_lidar_transfusion).

AWML exports it with mmdeploy (projects/TransFusion/mmdeploy.patch, configs/deploy/
transfusion_lidar_tensorrt_dynamic-20x5.py) and then fixes the TopK's K (scripts/fix_graph.py). The interface:
- inputs `voxels` [N, max_points, C] float32, `num_points` [N] int32, `coors` [N, 4] int32 (batch, z, y, x); axis 0
  of all three is dynamic, named `voxels_num`;
- outputs `cls_score0` [1, classes, K] = query_heatmap_score * sigmoid(heatmap), `bbox_pred0` [1, 8, K] = the cat
  of center (2), height (1), dim (3), vel (2) in that order (the patch's), `dir_cls_pred0` [1, 2, K] = rot.
The voxel decoration, the scatter (mmdeploy's one-batch rewrite: no mask, `canvas[:, y * nx + x] = features`) and
the head are in the one graph. With several decoder layers the outputs are the last layer's K proposals.

TorchScript exporter, opset 17 (mmdeploy uses 11; torch's TorchScript exporter takes 11..20 — 17 is cp_debug's
export opset, and its LayerNorm is one node), constant folding on; the TopK is checked to select K, as
fix_graph.py makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.recipes.transfusion.interface import (  # noqa: F401 (the interface's names, read here too)
    BBOX_HEADS, DEPLOY_INPUTS, DEPLOY_OUTPUTS, DYNAMIC_AXES, deploy_outputs)

ONNX_FILE = "transfusion.onnx"
DEFAULT_OPSET = 17


def deploy_module(model):
    """The TransFusion `model` behind Autoware's interface (a new module holding the model's children)."""
    from cp_debug.recipes.transfusion.stages import TransFusionDeploy

    return TransFusionDeploy(model).eval()


@dataclass(frozen=True)
class TransFusionExport:
    path: Path
    opset: int
    num_voxels: int  # of the example the graph was traced with
    topk: int


def example_voxels(cfg, sample_points=None, max_voxels: int | None = None):
    """(voxels, num_points, coors) of `sample_points` (default: the synthetic scene of seed 0), cut to `max_voxels`."""
    import torch

    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.lidar.voxelize import voxelize

    if sample_points is None:
        sample_points = synthetic_scene(0, cfg).points
    vox = voxelize(prepare_points(np.asarray(sample_points), cfg, source="sample points"), cfg)
    if vox.num_voxels == 0:
        raise BadInputError(f"the sample points lie outside {cfg.name!r}'s point_cloud_range {cfg.point_cloud_range}")
    n = vox.num_voxels if max_voxels is None else min(int(vox.num_voxels), max_voxels)
    return (vox.voxels[:n].float(), vox.num_points[:n].to(torch.int32), vox.coors[:n].to(torch.int32))


def fix_topk(model, k: int):
    """fix_graph.py's edit: the (first) TopK selects `k`, a constant; returns the new model. A graph without a
    TopK is refused (the proposal selection is missing)."""
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import export_like
    from cp_debug.graph.weight_store import import_graph

    graph = import_graph(model)
    topks = [n for n in graph.nodes if n.op == "TopK"]
    if not topks:
        raise BadInputError("the exported TransFusion graph has no TopK: the proposal selection did not export")
    topk = topks[0]
    topk.inputs[1] = gs.Constant(f"{topk.name}_K", values=np.array([k], dtype=np.int64))
    values, indices = topk.outputs
    values.shape, values.dtype = [1, k], topk.inputs[0].dtype or np.float32
    indices.shape, indices.dtype = [1, k], np.int64
    graph.cleanup().toposort()
    return export_like(graph, model)


def proposal_tensors(model) -> tuple[str, str, str]:
    """(the dense heatmap's logits, the TopK's input: the local-max scores flat over classes x cells, the TopK's
    indices) of a deployed graph: the tensors the proposal selection reads and writes, to expose as probes (the
    deployed outputs do not say which cell each query is). The dense heatmap is the input of the Sigmoid the TopK's
    input comes from (the head's `select_proposals`)."""
    producer = {t: n for n in model.graph.node for t in n.output}
    topks = [n for n in model.graph.node if n.op_type == "TopK"]
    if not topks:
        raise BadInputError("the TransFusion graph has no TopK: the proposal selection is missing")
    todo, seen = [topks[0].input[0]], set()
    while todo:
        node = producer.get(todo.pop(0))
        if node is None or node.name in seen:
            continue
        if node.op_type == "Sigmoid":
            return node.input[0], topks[0].input[0], topks[0].output[1]
        seen.add(node.name)
        todo += [t for t in node.input if t]
    raise BadInputError("the TransFusion graph's TopK reads no Sigmoid of a dense heatmap: not Autoware's selection")


PINNED_PROPOSALS = "top_proposals"  # the graph input a pinned graph's decoder reads its proposals from


def pin_proposals(model):
    """`model` (the deployed graph, any precision) with the decoder reading its proposals from a graph input
    `top_proposals` [1, K] int64 instead of the TopK's indices: the decoder on given proposals, as the bisect's query
    stage runs it, so a candidate's queries line up with the reference's (its self-attention sees the same set). The
    TopK stays, its indices a graph output (the graph's own choice, for the flips)."""
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import export_like
    from cp_debug.graph.weight_store import import_graph

    graph = import_graph(model)
    topk = next((n for n in graph.nodes if n.op == "TopK"), None)
    if topk is None:
        raise BadInputError("the TransFusion graph has no TopK: the proposal selection is missing")
    own = topk.outputs[1]
    pinned = gs.Variable(PINNED_PROPOSALS, dtype=np.int64, shape=own.shape)
    for node in list(own.outputs):
        for i, t in enumerate(node.inputs):
            if t is own:
                node.inputs[i] = pinned
    graph.inputs.append(pinned)
    if own.name not in {t.name for t in graph.outputs}:  # (one already where its probes were exposed)
        graph.outputs.append(own)
    graph.cleanup().toposort()
    return export_like(graph, model)


def export_transfusion(model, cfg, out_dir: str | Path, *, sample_points=None, opset: int = DEFAULT_OPSET,
                       max_voxels: int | None = None) -> TransFusionExport:
    """Write `out_dir/transfusion.onnx` (atomically; whole on its own, its weights in it) and return what was
    written."""
    import cp_debug
    from cp_debug.graph.onnx_files import save_onnx
    from cp_debug.graph.onnx_read import read_onnx
    from cp_debug.recipes.centerpoint.export import export_stage

    feed = example_voxels(cfg, sample_points, max_voxels)
    path = Path(out_dir) / ONNX_FILE
    traced = path.with_name(f".{path.stem}.traced.onnx")  # as traced, beside the file: fixed, then written
    try:
        export_stage(deploy_module(model), feed, DEPLOY_INPUTS, DEPLOY_OUTPUTS, DYNAMIC_AXES, traced, opset=opset,
                     metadata={"cp_debug.version": cp_debug.__version__, "cp_debug.recipe": "transfusion",
                               "cp_debug.preset": cfg.name})
        # the fixed graph may keep its weights in the process's weights folder (past `STORE_LIMIT`: the 768-grid
        # configs' canvases): `save_onnx` writes them into the file, never a reference into that temporary folder
        save_onnx(fix_topk(read_onnx(traced), cfg.num_proposals), path)
    finally:
        traced.unlink(missing_ok=True)
    return TransFusionExport(path, opset, int(feed[0].shape[0]), cfg.num_proposals)
