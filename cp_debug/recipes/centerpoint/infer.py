"""`cpdebug infer` of CenterPoint (`Recipe.infer_stages`): one scan through its pair stage by stage, each stage on
its own backend — the torch stage or ONNX Runtime on the file of `--onnx-dir` (exported to a temporary directory
where none is given) — with the shared torch glue between them (`pipeline.run_pipeline`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.centerpoint.config import CenterPointConfig


def rot_y_of_files(onnx_dir: Path, rot_y: bool | None, preset: str, console) -> bool | None:
    """The head convention the ONNX files of `onnx_dir` were exported with (their metadata; `rot_y` when they do
    not say), refusing a --(no-)rot-y-axis-reference that contradicts it; notes on `console` (None: quiet) when
    they were exported from another preset."""
    from cp_debug.errors import BadInputError
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, read_metadata

    meta = read_metadata(onnx_dir / BACKBONE_FILE) if (onnx_dir / BACKBONE_FILE).is_file() else {}
    file_preset = meta.get("cp_debug.preset")
    file_rot = meta.get("cp_debug.rot_y_axis_reference")
    if file_rot is not None:
        if rot_y is not None and rot_y != (file_rot == "true"):
            raise BadInputError(
                f"{onnx_dir / BACKBONE_FILE} was exported with rot_y_axis_reference={file_rot}; drop the "
                "--(no-)rot-y-axis-reference option or re-export"
            )
        rot_y = file_rot == "true"
    if file_preset is not None and file_preset != preset and console is not None:
        console.print(f"[yellow]note: {onnx_dir} was exported from preset {file_preset}, running as "
                      f"{preset}[/yellow]")
    return rot_y


def infer_stages(cfg: "CenterPointConfig", points, load: Callable[[], Any], *, encoder: str, backbone: str,
                 onnx_dir: Path | None, device: str, rot_y: bool | None, progress, quiet: bool) -> tuple:
    """One scan (`points`, the model's columns) through the pair, the voxel encoder on `encoder` and the
    backbone/neck/head on `backbone` ("torch" or "ort"): (the loaded model that `load()` builds — after the files'
    head convention is read, so a contradicting option is said first —, the head maps by name, the Detections, the
    stage seconds). `progress.step(text)` wraps the long steps; notes go to `progress.console` unless `quiet`."""
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE, export_onnx
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline
    from cp_debug.recipes.centerpoint.stage_runners import OrtStageRunner, torch_stage_runners

    uses_ort = "ort" in (encoder, backbone)
    if onnx_dir is not None and uses_ort:
        rot_y = rot_y_of_files(onnx_dir, rot_y, cfg.name, None if quiet else progress.console)
    rot_y = bool(rot_y)
    loaded = load()
    with tempfile.TemporaryDirectory(prefix="cpdebug-onnx-") as tmp:
        if uses_ort and onnx_dir is None:
            with progress.step("exporting ONNX to a temporary directory"):
                onnx_dir = Path(tmp)
                export_onnx(loaded.model, cfg, onnx_dir, rot_y_axis_reference=rot_y, sample_points=points)
        providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if device == "cuda" else ("CPUExecutionProvider",)
        torch_enc, torch_bb = torch_stage_runners(loaded.model, device=device, rot_y_axis_reference=rot_y)
        enc = OrtStageRunner(onnx_dir / VOXEL_ENCODER_FILE, providers) if encoder == "ort" else torch_enc
        bb = OrtStageRunner(onnx_dir / BACKBONE_FILE, providers) if backbone == "ort" else torch_bb
        with progress.step(f"running the pipeline (encoder {encoder}, backbone {backbone}, {device})"):
            with enc, bb:
                result = run_pipeline(cfg, points, enc, bb, capture=False, device=device, rot_y_axis_reference=rot_y)
    return loaded, result.head, result.detections, result.timings
