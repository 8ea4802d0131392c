"""`cpdebug export`: write CenterPoint's two deployment ONNX files (AWML's interface), or TransFusion-L's one
(`--recipe transfusion`: Autoware's transfusion.onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cp_debug.cli.common.options import (Checkpoint, ConfigFile, NoRotY, Points, Preset, Quiet, RandomWeights, Recipe,
    RotY,
                                   Seed, Verbose, model_record, option, recipe_name, rot_y)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord


def export(
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    out: Annotated[Path, option(
        "--out", help="Directory for pts_voxel_encoder.onnx and pts_backbone_neck_head.onnx (transfusion.onnx with "
        "--recipe transfusion).")] = Path("cpdebug-out/onnx"),
    rot_y_axis_reference: RotY = None,
    no_rot_y_axis_reference: NoRotY = False,
    points: Points = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Export CenterPoint to ONNX as AWML deploys it (opset 17, TorchScript exporter, constant folding)."""
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        name = recipe_name(recipe, config)
        from cp_debug.cli.common.preflight import refuse_options

        awml_rot_y = rot_y(rot_y_axis_reference, no_rot_y_axis_reference)
        refuse_options(name, "export", {"--rot-y-axis-reference": awml_rot_y})
        _export(name, model, out, bool(awml_rot_y), points, quiet, third_party)


def _export(recipe: str, model: ModelRecord, out: Path, rot_y_axis_reference: bool, points: Path | None,
            quiet: bool, third_party: ThirdParty) -> None:
    """The recipe's deployment files of `model` (`Recipe.export_files`), their paths printed."""
    from cp_debug.cli.common.output import StepProgress, stdout_console
    from cp_debug.cli.common.preflight import check_inputs
    from cp_debug.recipes.catalog import recipe as recipe_of

    r = recipe_of(recipe)
    r.config(model.model_name)  # an unknown preset fails before torch is imported
    check_inputs(points=points, checkpoint=model.checkpoint)
    progress = StepProgress(quiet, stream=third_party.terminal)
    with progress.step(f"building {model.model_name} ({r.weights_label(model)})"):
        loaded = r.load_model(model)
    sample = None
    if points is not None:
        from cp_debug.data.point_files import load_points

        sample = load_points(points, loaded.cfg)
    with progress.step(f"exporting to {out}"):
        files = r.export_files(loaded, out, rot_y_axis_reference=rot_y_axis_reference, sample_points=sample)
    console = stdout_console()
    for path in files:
        console.print(f"{path}", highlight=False, soft_wrap=True)
    third_party.print_count(console, where=None)
