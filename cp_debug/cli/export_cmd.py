"""`cpdebug export`: write CenterPoint's two deployment ONNX files (AWML's interface)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._quiet import ThirdParty, Verbose

Preset = Annotated[str, typer.Option(help="CenterPoint preset: demo, tiny, awml-base, awml-j6gen2, awml-760.")]
Checkpoint = Annotated[Optional[Path], typer.Option(help="mmengine/AWML checkpoint (.pth); if omitted, the shipped trained weights (demo) or seeded random weights (other presets).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Seeded random weights instead of the shipped trained demo weights.")]
Seed = Annotated[int, typer.Option(help="Seed for random weights and the synthetic scan.")]
RotY = Annotated[bool, typer.Option(help="AWML's rot_y_axis_reference head outputs: dim as [w,l,h], rot as [-cos,-sin].")]


def export(
    preset: Preset = "demo",
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(help="Directory for pts_voxel_encoder.onnx and pts_backbone_neck_head.onnx.")] = Path("cpdebug-out/onnx"),
    rot_y_axis_reference: RotY = False,
    points: Annotated[Optional[Path], typer.Option(help="Point file (.bin/.npy/.npz) to trace with; a synthetic scan if omitted.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Verbose = False,
) -> None:
    """Export CenterPoint to ONNX as AWML deploys it (opset 17, TorchScript exporter, constant folding)."""
    with handle_errors(), ThirdParty(verbose=verbose) as third_party:
        _export(preset, checkpoint, seed, out, rot_y_axis_reference, points, quiet, third_party, random_weights)


def _export(preset, checkpoint, seed, out, rot_y_axis_reference, points, quiet, third_party, random_weights=False) -> None:
    from cp_debug.cli._output import StepProgress, stdout_console
    from cp_debug.models.centerpoint.config import get_preset

    get_preset(preset)  # an unknown preset fails before torch is imported
    progress = StepProgress(quiet, stream=third_party.terminal)
    from cp_debug.recipes.centerpoint.model_source import load_model, weights_label

    with progress.step(f"building {preset} ({weights_label(preset, checkpoint, seed, random_weights)})"):
        loaded = load_model(preset, checkpoint, seed, random_weights=random_weights)
    sample = None
    if points is not None:
        from cp_debug.models.centerpoint.points import load_points

        sample = load_points(points, loaded.cfg)
    with progress.step(f"exporting to {out}"):
        from cp_debug.recipes.centerpoint.export import export_onnx

        result = export_onnx(loaded.model, loaded.cfg, out, rot_y_axis_reference=rot_y_axis_reference, sample_points=sample)
    console = stdout_console()
    console.print(f"{result.voxel_encoder}", highlight=False, soft_wrap=True)
    console.print(f"{result.backbone}", highlight=False, soft_wrap=True)
    third_party.print_count(console, where=None)
