"""Export CenterPoint as AWML deploys it, to files: `pts_voxel_encoder.onnx` and `pts_backbone_neck_head.onnx`.

This is the file export of `cpdebug export` (and of eval, bench and the PTQ workflow's Q/DQ files); bisect's
in-memory export of a module is `cp_debug.export`.

TorchScript exporter (`dynamo=False`), opset 17, constant folding on, as AWML's exporter does. Example inputs
come from a real (or synthetic) scan run through the torch glue, so traced shapes are realistic. Every file is
written to a temporary name and moved into place, so a failed export never leaves a half-written model. The graph
torch.onnx.export wrote is kept in the export cache (`export.cache.file_export_cached`, with the warnings it gave):
eval, fix, bench and infer of the same model, weights and scan export once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.files import os_reason
from cp_debug.models.centerpoint.config import BACKBONE_FILE, VOXEL_ENCODER_FILE

DEFAULT_OPSET = 17
__all__ = ["BACKBONE_FILE", "VOXEL_ENCODER_FILE", "DEFAULT_OPSET", "ExportResult", "export_onnx", "export_stage",
           "example_stage_inputs", "read_metadata"]


@dataclass(frozen=True)
class ExportResult:
    voxel_encoder: Path
    backbone: Path
    opset: int = DEFAULT_OPSET
    rot_y_axis_reference: bool = False


def export_stage(
    module,
    example_inputs: Sequence,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    do_constant_folding: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export one module with the TorchScript exporter to `path`, atomically; returns the path.

    `metadata` goes into the model's metadata_props (e.g. the preset, so a later run can check it).
    """
    import onnx
    import torch

    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=".onnx.tmp")
    except OSError as e:  # --out names a file, or a folder that cannot be written
        raise BadInputError(f"cannot write {p}: {os_reason(e)}; choose another --out") from None
    os.close(fd)
    modes = [(m, m.training) for m in module.modules()]  # restored exactly, submodule by submodule
    module.eval()
    axes = {k: dict(v) for k, v in (dynamic_axes or {}).items()}

    def fresh():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                module,
                tuple(example_inputs),
                tmp,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=do_constant_folding,
                export_params=True,
                training=torch.onnx.TrainingMode.EVAL,
                dynamo=False,
            )
        return onnx.load(tmp)

    try:
        from cp_debug.export.cache import file_export_cached
        from cp_debug.graph.onnx_files import save_onnx

        # a second export of the same module, weights and inputs (eval, fix, bench, infer of one model) is read back
        settings = {"input_names": list(input_names), "output_names": list(output_names), "dynamic_axes": axes,
                    "opset": opset, "do_constant_folding": do_constant_folding,
                    "writer": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}
        model = file_export_cached(module, tuple(example_inputs), settings, fresh)
        for key, value in (metadata or {}).items():
            prop = model.metadata_props.add()
            prop.key, prop.value = str(key), str(value)
        save_onnx(model, p)  # whole on its own: weights the process keeps in files are written into it
    finally:
        for m, training in modes:
            m.training = training
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props as a dict (weights are not loaded)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError, truncated or foreign files: one message
        raise BadInputError(f"cannot read {path} as an ONNX model ({type(err).__name__}); is it a complete "
                            ".onnx file (`cpdebug export` writes one)?") from None
    return {p.key: p.value for p in model.metadata_props}


def example_stage_inputs(model, cfg, sample_points=None):
    """(input_features, spatial_features) for tracing, from `sample_points` or the synthetic scene of seed 0."""
    import torch

    from cp_debug.models.centerpoint.pillar_encoder import get_input_features
    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.lidar.voxelize import voxelize

    if sample_points is None:
        sample_points = synthetic_scene(0, cfg).points
    pts = prepare_points(np.asarray(sample_points), cfg, source="sample points")
    device = next(model.parameters()).device
    vox = voxelize(pts, cfg, device=device)
    if vox.num_voxels == 0:
        raise BadInputError(f"the sample points lie outside preset {cfg.name!r}'s point_cloud_range "
                            f"{cfg.point_cloud_range}")
    feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)
    with torch.no_grad():
        pillars = model.pts_voxel_encoder(feats).squeeze(1)
        spatial = model.pts_middle_encoder(pillars, vox.coors, 1)
    return feats, spatial


def export_onnx(
    model,
    cfg,
    out_dir: str | Path,
    *,
    rot_y_axis_reference: bool = False,
    sample_points=None,
    opset: int = DEFAULT_OPSET,
) -> ExportResult:
    """Write both deployment ONNX files into `out_dir` and return their paths."""
    from cp_debug.models.centerpoint.model import (
        BACKBONE_INPUTS,
        HEAD_OUTPUTS,
        VOXEL_ENCODER_INPUTS,
        VOXEL_ENCODER_OUTPUTS,
        BackboneNeckHeadStage,
        VoxelEncoderStage,
    )

    import cp_debug

    out = Path(out_dir)
    model.eval()
    meta = {
        "cp_debug.version": cp_debug.__version__,
        "cp_debug.preset": cfg.name,
        "cp_debug.in_channels": str(cfg.in_channels),
        "cp_debug.rot_y_axis_reference": str(bool(rot_y_axis_reference)).lower(),
    }
    feats, spatial = example_stage_inputs(model, cfg, sample_points)
    encoder = export_stage(
        VoxelEncoderStage(model),
        (feats,),
        VOXEL_ENCODER_INPUTS,
        VOXEL_ENCODER_OUTPUTS,
        {"input_features": {0: "num_voxels", 1: "num_max_points"}, "pillar_features": {0: "num_voxels"}},
        out / VOXEL_ENCODER_FILE,
        opset=opset,
        metadata=meta,
    )
    axes = {"spatial_features": {0: "batch_size", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch_size", 2: "head_height", 3: "head_width"} for name in HEAD_OUTPUTS})
    backbone = export_stage(
        BackboneNeckHeadStage(model, rot_y_axis_reference=rot_y_axis_reference),
        (spatial,),
        BACKBONE_INPUTS,
        HEAD_OUTPUTS,
        axes,
        out / BACKBONE_FILE,
        opset=opset,
        metadata=meta,
    )
    return ExportResult(encoder, backbone, opset, bool(rot_y_axis_reference))
