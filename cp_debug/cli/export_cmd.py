"""`cpdebug export`: write CenterPoint's two deployment ONNX files (AWML's interface), or TransFusion-L's one
(`--recipe transfusion`: Autoware's transfusion.onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cp_debug.cli._options import (ConfigFile, Checkpoint, Points, Preset, Quiet, RandomWeights, Recipe, Seed,
                                   Verbose, model_record, recipe_name)
from cp_debug.cli._quiet import ThirdParty
from cp_debug.models.centerpoint.source import ModelRecord

RotY = Annotated[bool,
                 typer.Option(help="AWML's rot_y_axis_reference head outputs: dim as [w,l,h], rot as [-cos,-sin].")]


def export(
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(
        help="Directory for pts_voxel_encoder.onnx and pts_backbone_neck_head.onnx (transfusion.onnx with "
             "--recipe transfusion).")] = Path("cpdebug-out/onnx"),
    rot_y_axis_reference: RotY = False,
    points: Points = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Export CenterPoint to ONNX as AWML deploys it (opset 17, TorchScript exporter, constant folding)."""
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        if recipe_name(recipe, config) == "transfusion":
            if rot_y_axis_reference:
                from cp_debug.errors import BadInputError

                raise BadInputError("--rot-y-axis-reference is CenterPoint's: drop it for --recipe transfusion")
            _export_transfusion(model, out, points, quiet, third_party)
            return
        _export(model, out, rot_y_axis_reference, points, quiet, third_party)


def _export_transfusion(model: ModelRecord, out: Path, points: Path | None, quiet: bool,
                        third_party: ThirdParty) -> None:
    from cp_debug.cli._output import StepProgress, stdout_console
    from cp_debug.cli._preflight import check_inputs
    from cp_debug.models.transfusion.presets import get_preset

    cfg = get_preset(model.model_name)  # an unknown preset fails before torch is imported
    check_inputs(points=points, checkpoint=model.checkpoint)
    progress = StepProgress(quiet, stream=third_party.terminal)
    with progress.step(f"building {cfg.name}"):
        from cp_debug.recipes.transfusion.source import load_transfusion

        loaded = load_transfusion(model.model_name, model.checkpoint, model.seed, model.random_weights)
    sample = None
    if points is not None:
        from cp_debug.data.point_files import load_points

        sample = load_points(points, loaded.cfg)
    with progress.step(f"exporting to {out}"):
        from cp_debug.recipes.transfusion.export import export_transfusion

        result = export_transfusion(loaded.model, loaded.cfg, out, sample_points=sample)
    console = stdout_console()
    console.print(f"{result.path}", highlight=False, soft_wrap=True)
    third_party.print_count(console, where=None)


def _export(model: ModelRecord, out: Path, rot_y_axis_reference: bool, points: Path | None, quiet: bool,
            third_party: ThirdParty) -> None:
    from cp_debug.cli._output import StepProgress, stdout_console
    from cp_debug.cli._preflight import check_inputs
    from cp_debug.models.centerpoint.presets import get_preset

    get_preset(model.model_name)  # an unknown preset fails before torch is imported
    check_inputs(points=points, checkpoint=model.checkpoint)
    progress = StepProgress(quiet, stream=third_party.terminal)
    with progress.step(f"building {model.model_name} ({model.label})"):
        loaded = model.load()
    sample = None
    if points is not None:
        from cp_debug.data.point_files import load_points

        sample = load_points(points, loaded.cfg)
    with progress.step(f"exporting to {out}"):
        from cp_debug.recipes.centerpoint.export import export_onnx

        result = export_onnx(loaded.model, loaded.cfg, out, rot_y_axis_reference=rot_y_axis_reference,
                             sample_points=sample)
    console = stdout_console()
    console.print(f"{result.voxel_encoder}", highlight=False, soft_wrap=True)
    console.print(f"{result.backbone}", highlight=False, soft_wrap=True)
    third_party.print_count(console, where=None)
