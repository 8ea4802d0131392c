"""TransFusion-L as a bisect subject: two stages cut at the head's proposal selection, joined by that selection.

Deployed, TransFusion is one graph (`export.py`); the bisect cuts it where the head makes its discrete decision,
the top K of the dense heatmap's local maxima (`proposals.py`):
- stage 0 `pts_bev`: voxels, num_points, coors -> the head's shared features and dense heatmap (the decoration, the
  one-batch scatter, SECOND, SECONDFPN, shared_conv, heatmap_head);
- the glue: the proposal selection in PyTorch FP32, each candidate's made on the reference's proposals
  (`Subject.decide`) and its own choice reported as flips;
- stage 1 `pts_bbox_head`: the shared features, the proposals and their scores -> the decoder layers (self- and
  cross-attention, FFN, norms) and each prediction head, and cls_score as the deployed cls_score0.
Voxelization is cp_debug's, computed once and given to every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.bisect.subjects.model_facts import RecipeFacts
from cp_debug.bisect.subjects.subject import Stage, Subject

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.point_files import LoadedPoints
    from cp_debug.recipes.transfusion.detections import NodeParams

HEAD_PROBES = ("self_posembed", "cross_posembed", "self_attn", "norms.0", "cross_attn", "norms.1", "ffn", "norms.2")


def _bev_probes(model) -> tuple[str, ...]:
    names = [f"pts_voxel_encoder.pfn_layers.{i}" for i in range(len(model.pts_voxel_encoder.pfn_layers))]
    names.append("pts_middle_encoder")
    names += [f"pts_backbone.{n}" for n in model.pts_backbone.stage_names()]
    names += [f"pts_neck.deblocks.{i}" for i in range(len(model.pts_neck.deblocks))]
    return (*names, "pts_bbox_head.shared_conv", "pts_bbox_head.heatmap_head")


def _query_probes(model) -> tuple[str, ...]:
    head = model.pts_bbox_head
    names = ["pts_bbox_head.class_encoding"]
    for i in range(len(head.decoder)):
        names += [f"pts_bbox_head.decoder.{i}.{p}" for p in HEAD_PROBES]
        names += [f"pts_bbox_head.prediction_heads.{i}.{h}" for h, _ in head.prediction_heads[i].named_children()]
    return tuple(names)


def transfusion_subject(preset: str = "transfusion-tiny", checkpoint: str | Path | None = None,
                        points: "str | Path | LoadedPoints | None" = None, seed: int = 0,
                        load_dim: int | None = None, use_dim: int | tuple[int, ...] | None = None,
                        max_voxels: int | None = None, node_params: "NodeParams | None" = None,
                        random_weights: bool = False, params: "Sequence[str | Path]" = ()) -> Subject:
    """The two-stage subject of a TransFusion preset (or AWML config .py) with `checkpoint`'s weights, else the
    preset's shipped trained weights (unless `random_weights`), else AWML's initialisation from `seed`; the scan: a
    point file, a scan in memory or None (the synthetic scan of `seed`); `max_voxels`: the scan's first voxels only
    (small tests). The report's detection verdict: each side's boxes as Autoware's node makes them (`detections.py`;
    `node_params`, default its shipped post-process for this model; `params`: the node's parameter files
    (`--params`), their post-process — score threshold, circle and IoU NMS, yaw thresholds — on this model's
    classes, grid and proposals, whose agreement with the files the run's lint has checked)."""
    import torch

    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.recipes.centerpoint.subject import _scan
    from cp_debug.recipes.transfusion.verdict import detection_verdict
    from cp_debug.recipes.transfusion.proposals import ProposalSelection
    from cp_debug.recipes.transfusion.source import load_transfusion
    from cp_debug.recipes.transfusion.split import deployed_split
    from cp_debug.recipes.transfusion.stages import (BEV_INPUTS, BEV_OUTPUTS, QUERY_INPUTS, QUERY_OUTPUTS, BevStage,
                                                     QueryStage)

    from cp_debug.models.transfusion.presets import get_preset

    cfg = get_preset(preset)
    if params and node_params is None:
        from cp_debug.recipes.transfusion.detections import read_node_params

        node_params = read_node_params(params).for_model(cfg)
    loaded_points, points_file, _ = _scan(cfg, points, seed, load_dim, use_dim)  # a bad file fails before the model
    loaded = load_transfusion(preset, checkpoint, seed, random_weights)
    model = loaded.model.eval()
    vox = voxelize(torch.as_tensor(loaded_points.points), cfg)
    n = int(vox.num_voxels) if max_voxels is None else min(int(vox.num_voxels), max_voxels)
    feed = (vox.voxels[:n].float(), vox.num_points[:n].to(torch.int32), vox.coors[:n].to(torch.int32))
    bev, query = BevStage(model).eval(), QueryStage(model).eval()
    selection = ProposalSelection(model.pts_bbox_head, cfg.class_names, cfg.head_size)
    with torch.no_grad():
        ex_bev = tuple(t[: min(n, 2000)] for t in feed)
        ex_up = dict(zip(BEV_OUTPUTS, (t.numpy() for t in bev(*ex_bev))))
        ex_query = tuple(torch.as_tensor(v) for v in selection.glue(1, ex_up).values())
    axes = {name: {0: "voxels_num"} for name in BEV_INPUTS}

    def export_bev():
        from cp_debug.export.cache import export_cached

        return export_cached(bev, ex_bev, BEV_INPUTS, BEV_OUTPUTS, exporter="torchscript", opset=17, extra=cfg,
                             dynamic_axes=axes)

    def export_query():
        from cp_debug.export.cache import export_cached

        return export_cached(query, ex_query, QUERY_INPUTS, QUERY_OUTPUTS, exporter="torchscript", opset=17,
                             extra=cfg)

    stages = [
        Stage(name="pts_bev", input_names=BEV_INPUTS, output_names=BEV_OUTPUTS, module=bev, example_inputs=ex_bev,
              stage_probes=_bev_probes(model), export=export_bev,
              output_aliases={"bev_features": "pts_bbox_head.shared_conv",
                              "dense_heatmap": "pts_bbox_head.heatmap_head"}),
        Stage(name="pts_bbox_head", input_names=QUERY_INPUTS, output_names=QUERY_OUTPUTS, module=query,
              example_inputs=ex_query, stage_probes=_query_probes(model), export=export_query),
    ]
    facts = RecipeFacts("transfusion", cfg.name, loaded.weights, points=points_file or loaded_points.source,
                        points_file=points_file, seed=seed, load_dim=load_dim, use_dim=use_dim,
                        point_cloud={**loaded_points.info(), "warnings": list(loaded_points.warnings)},
                        num_points=int(len(loaded_points.points)), num_voxels=n, grid=tuple(cfg.grid_size),
                        checkpoint=str(checkpoint) if checkpoint else None,
                        random_weights=loaded.weights.startswith("random"),
                        post_process=node_params.post_process() if node_params is not None else None)
    return Subject(name=f"transfusion:{cfg.name}", stages=stages,
                   inputs={k: t.numpy() for k, t in zip(BEV_INPUTS, feed)}, glue=selection.glue,
                   decide=selection.decide, facts=facts, default_level="stage", warnings=list(loaded_points.warnings),
                   detection_verdict=detection_verdict(cfg, node_params), deployed_split=deployed_split)
