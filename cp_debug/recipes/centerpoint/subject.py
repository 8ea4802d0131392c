"""CenterPoint as a bisect subject: two stages (the two ONNX files AWML deploys) joined by shared glue.

Voxelization and the decorated features are computed once in PyTorch and given to every backend (voxel
order differs between implementations otherwise); the scatter between the stages runs in PyTorch FP32 on
each backend's own pillar features, so error flows from the voxel encoder into the backbone as it does in
deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.bisect.subject import Stage, Subject

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.point_files import LoadedPoints

# The `stage` level: each PFN layer; each SECOND block (or each ConvNeXt_PC downsample layer, stage and output
# norm), each neck deblock, the shared conv and each head.
def _encoder_probes(model) -> tuple[str, ...]:
    return tuple(f"pts_voxel_encoder.pfn_layers.{i}" for i in range(len(model.pts_voxel_encoder.pfn_layers)))


def _backbone_probes(model) -> tuple[str, ...]:
    names = [f"pts_backbone.{n}" for n in model.pts_backbone.stage_names()]
    names += [f"pts_neck.deblocks.{i}" for i in range(len(model.pts_neck.deblocks))]
    names.append("pts_bbox_head.shared_conv")
    head = model.pts_bbox_head.task_heads[0]
    names += [f"pts_bbox_head.task_heads.0.{h}" for h, _ in head.named_children()]
    return tuple(names)


def _scan(cfg, points: "str | Path | LoadedPoints | None", seed: int, load_dim: int | None,
          use_dim: int | tuple[int, ...] | None) -> "tuple[LoadedPoints, str | None]":
    """(the scan, its file or None): a point file (`load_dim`/`use_dim` read it as mmdet3d's LoadPointsFromFile),
    a scan already in memory (`data.point_files.LoadedPoints`, e.g. a sweep's frame: no temporary file), or None:
    the model's synthetic scan of `seed` (`data.frames.ModelScan`, bisect's default input)."""
    from cp_debug.data.frames import ModelScan
    from cp_debug.data.point_files import LoadedPoints, load_point_file, points_from_array

    if isinstance(points, LoadedPoints):
        return points, None
    if points is not None:
        return load_point_file(points, cfg, load_dim=load_dim, use_dim=use_dim), str(points)
    source = ModelScan(seed)
    return points_from_array(source.load(cfg).points, cfg, source.describe()), None


def centerpoint_subject(preset="demo", checkpoint: str | Path | None = None,
                        points: "str | Path | LoadedPoints | None" = None,
                        seed: int = 0, trace_side: int = 128, load_dim: int | None = None,
                        use_dim: int | tuple[int, ...] | None = None, random_weights: bool = False,
                        int8: str | Path | None = None) -> Subject:
    """The two-stage subject. `points`: a point file, a scan in memory or None (see `_scan`); what loading did
    (points read, dropped, zero-filled columns) is in `description["point_cloud"]`, its warnings in
    `subject.warnings`. Weights as `load_model` gives them: the checkpoint, else the preset's shipped
    trained weights (demo), else (or with `random_weights`) the seeded random initialisation. With `int8`
    (a PTQ dir or checkpoint) the model is that checkpoint's BN-fused fake-quant model (see int8_source.py).
    `preset`: a preset name, a config file (.py) or a CenterPointConfig (`read_config`)."""
    import torch

    from cp_debug.models.centerpoint.presets import as_config
    from cp_debug.models.centerpoint.model import (BACKBONE_INPUTS, HEAD_OUTPUTS, VOXEL_ENCODER_INPUTS,
                                                   VOXEL_ENCODER_OUTPUTS, BackboneNeckHeadStage, VoxelEncoderStage)
    from cp_debug.models.centerpoint.pillar_encoder import get_input_features
    from cp_debug.models.centerpoint.voxelize import voxelize
    from cp_debug.recipes.centerpoint.detection_verdict import detection_verdict
    from cp_debug.errors import BadInputError
    from cp_debug.export.cache import export_cached

    cfg = as_config(preset)
    loaded, points_file = _scan(cfg, points, seed, load_dim, use_dim)  # before the model: a bad file fails fast
    scan = points_file or loaded.source
    pts = loaded.points
    from cp_debug.models.centerpoint.source import load_model

    int8_info = None
    if int8 is not None:
        from cp_debug.recipes.centerpoint.int8_source import load_int8_model

        if checkpoint is not None or random_weights:
            raise BadInputError("--int8 brings its own (BN-fused) weights: drop --checkpoint / --random-weights")
        loaded_int8 = load_int8_model(int8, cfg)
        model, source, int8_info = loaded_int8.model, loaded_int8.weights, loaded_int8.info
    else:
        weights = load_model(cfg, checkpoint, seed, random_weights=random_weights)
        model, source = weights.model, weights.weights
    model.eval()
    with torch.no_grad():
        vox = voxelize(torch.as_tensor(pts), cfg)
        feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)
    coors = vox.coors
    encoder = VoxelEncoderStage(model).eval()
    backbone = BackboneNeckHeadStage(model).eval()
    if int8 is not None:
        from cp_debug.quant.quantizers import mark_ptq

        mark_ptq(encoder), mark_ptq(backbone)
    nx, ny = cfg.grid_size
    side_y, side_x = min(ny, trace_side), min(nx, trace_side)
    ex_spatial = torch.zeros(1, cfg.pillar_channels, side_y, side_x)
    ex_spatial.normal_(generator=torch.Generator().manual_seed(seed)).relu_()
    ex_feats = feats[: min(len(feats), 2000)]

    # through the export cache (a second run of the same model, weights and example inputs reads the graph back)
    def export_encoder():
        return export_cached(encoder, (ex_feats,), VOXEL_ENCODER_INPUTS, VOXEL_ENCODER_OUTPUTS,
                             exporter="torchscript", opset=17, extra=cfg,
                             dynamic_axes={"input_features": {0: "num_voxels", 1: "num_max_points"},
                                           "pillar_features": {0: "num_voxels"}})

    def export_backbone():
        return export_cached(backbone, (ex_spatial,), BACKBONE_INPUTS, HEAD_OUTPUTS, exporter="torchscript", opset=17,
                             extra=cfg,
                             dynamic_axes={"spatial_features": {0: "batch_size", 2: "height", 3: "width"},
                                           **{h: {0: "batch_size", 2: "height", 3: "width"} for h in HEAD_OUTPUTS}})

    from cp_debug.recipes.centerpoint.int8_source import qdq_export

    enc_stage = Stage(
        name="pts_voxel_encoder", input_names=VOXEL_ENCODER_INPUTS, output_names=VOXEL_ENCODER_OUTPUTS,
        module=encoder, example_inputs=(ex_feats,), stage_probes=_encoder_probes(model),
        export=export_encoder, qdq_export=qdq_export(model, export_encoder) if int8 is not None else None)
    bb_stage = Stage(
        name="pts_backbone_neck_head", input_names=BACKBONE_INPUTS, output_names=HEAD_OUTPUTS,
        module=backbone, example_inputs=(ex_spatial,), stage_probes=_backbone_probes(model),
        output_aliases={h: f"pts_bbox_head.task_heads.0.{h}" for h in HEAD_OUTPUTS},
        export=export_backbone, qdq_export=qdq_export(model, export_backbone) if int8 is not None else None)
    scatter = model.pts_middle_encoder
    if int8_info is not None:
        from cp_debug.recipes.centerpoint.int8_source import layer_quant_error

        def forward_once(_):
            pillars = encoder(feats)
            backbone(scatter(pillars.reshape(pillars.shape[0], -1), coors, 1))

        int8_info["quantization"] = layer_quant_error(model, forward_once)

    def glue(index: int, upstream: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pillars = torch.as_tensor(np.asarray(upstream["pillar_features"], dtype=np.float32))
        with torch.no_grad():
            spatial = scatter(pillars.reshape(pillars.shape[0], -1), coors, 1)
        return {"spatial_features": spatial.numpy()}

    return Subject(
        name=f"centerpoint:{cfg.name}", stages=[enc_stage, bb_stage],
        inputs={"input_features": feats.numpy()}, glue=glue, default_level="stage",
        description={"kind": "recipe", "recipe": "centerpoint", "preset": cfg.name, "weights": source, "points": scan,
                     "checkpoint": str(checkpoint) if checkpoint else None, "random_weights": bool(random_weights),
                     "points_file": points_file, "seed": seed,
                     "load_dim": load_dim, "use_dim": list(use_dim) if isinstance(use_dim, tuple) else use_dim,
                     "point_cloud": {**loaded.info(), "warnings": list(loaded.warnings)},
                     "num_points": int(len(pts)), "num_voxels": int(vox.num_voxels), "grid": [nx, ny],
                     **({"int8": int8_info} if int8_info is not None else {})},
        warnings=list(loaded.warnings), detection_verdict=detection_verdict(cfg))

