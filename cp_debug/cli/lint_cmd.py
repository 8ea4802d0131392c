"""`cpdebug lint`: a training config, Autoware's parameter files and a deployed ONNX pair, checked against each
other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import ConfigFile, DataRoot, Json, Junit, Recipe, Verbose, option, recipe_name
from cp_debug.cli.common.quiet import ThirdParty


def lint(
    recipe: Recipe = None,
    config: ConfigFile = None,
    preset: Annotated[Optional[str], option(
        "--preset", help="A preset as the training config (demo, tiny, awml-base, …; --recipe transfusion: "
        "transfusion-tiny, transfusion-t4-90m-768, …), instead of --config.")] = None,
    params: Annotated[Optional[list[Path]], option(
        "--params", metavar="FILE", help="Autoware parameter files (*.param.yaml: the model's ml_package file, "
        "centerpoint_common, a model manifest; --recipe transfusion: transfusion.param.yaml, "
        "transfusion_ml_package.param.yaml), read in order as the launch file reads them; repeat the option.")] \
        = None,
    onnx_dir: Annotated[Optional[Path], option(
        "--onnx-dir", metavar="DIR", help="The deployed pair (the folder SPEC@DIR names): "
        "pts_voxel_encoder[_<model>].onnx and "
        "pts_backbone_neck_head[_<model>].onnx (or a manifest naming them); --recipe transfusion: the folder of "
        "transfusion.onnx, or the file; its *.param.yaml files are read too when no --params is given.")] = None,
    points: Annotated[Optional[list[Path]], option(
        "--points", metavar="FILE", help="Point files whose pillars are counted against the voxel cap; repeatable.")]
    = None,
    scenes: Annotated[Optional[Path], option(
        "--scenes", help="An info file, a folder of point files or a rosbag2 folder: every frame's pillars counted "
        "against the voxel cap.")] = None,
    data_root: DataRoot = None,
    json_out: Json = None,
    junit: Junit = None,
    verbose: Verbose = False,
) -> None:
    """Check the training config, the parameter files and the ONNX pair against each other: class names and order,
    point features and the encoder's input, range and voxel size against the ONNX grid, the downsample factor
    against the head maps, the head's channels (variance, twist), the voxel cap against the data, thresholds as
    the node decodes them. --recipe transfusion: classes, range, voxel size, proposals, voxels_num, box values and
    yaw-norm thresholds of an AWML TransFusion config, the node's files and transfusion.onnx.
    """
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.cli.common.preflight import check_outputs
        from cp_debug.lint.run import LintRequest, params_of_folder
        from cp_debug.recipes.catalog import recipe as recipe_of

        check_outputs(junit)

        linter = recipe_of(recipe_name(recipe, config)).plugin("lint")
        cfg, label = _config(config, preset, linter)
        files = tuple(params or ()) or params_of_folder(onnx_dir)
        frames, data_label = _frames(points, scenes, data_root, cfg)
        report = linter.lint(LintRequest(cfg, label, files, onnx_dir, tuple(frames), data_label))

        from cp_debug.cli.common.output import finish

        def show(console) -> None:
            for f in report.findings:
                if f.status != "skipped" or verbose:
                    style = {"mismatch": "red", "warning": "yellow", "ok": "green"}.get(f.status, "")
                    console.print(f.line(), style=style, highlight=False, soft_wrap=True)
            console.print(f"lint: {report.summary()}", style="bold", highlight=False)

        if junit is not None:
            from cp_debug.report.junit import write_junit

            write_junit(junit, [_junit_suite(report)])
        finish(report.to_json(), json_out, third_party, show)
    raise typer.Exit(int(report.exit_code))


def _junit_suite(report):
    """One JUnit test case per check (`report.junit`): a mismatch fails with its line (both values and where each
    came from), a skipped check is skipped, warnings pass with their line in the case's output."""
    from cp_debug.report.junit import TestCase, TestSuite

    cases = [TestCase(f.check, "cpdebug.lint", failure=f.message if f.failed else None,
                      skipped=f.message if f.status == "skipped" else None, failure_type="cpdebug.lint.mismatch",
                      properties={"status": f.status, "message": f.message,
                                  **{f"{x.kind} ({x.where})": x.value for x in f.facts}})
             for f in report.findings]
    return TestSuite("cpdebug.lint", cases, {"consistent": report.consistent, "summary": report.summary()})


def _config(config: Path | None, preset: str | None, linter):
    """The training config (a file, else the preset) as the recipe's `lint` plug-in `linter` reads it, and how
    messages name it; (None, "") when neither is given."""
    from cp_debug.errors import BadInputError
    from cp_debug.lidar.record import model_name

    if config is not None and preset is not None:
        raise BadInputError("give --config or --preset, not both")
    if config is None and preset is None:
        return None, ""
    name = model_name(preset or "", config)
    return linter.model_config(name), (Path(name).name if config is not None else f"preset {name}")


def _frames(points: list[Path] | None, scenes: Path | None, data_root: Path | None, cfg):
    from cp_debug.errors import BadInputError

    if not points and scenes is None:
        return [], ""
    if cfg is None:
        raise BadInputError("--points/--scenes are loaded as the model loads them: give --config or --preset too")
    from cp_debug.data.frames import Frame, PointFile, from_scenes

    if points:
        for p in points:
            if not p.is_file():
                raise BadInputError(f"--points {p}: no such file")
        return [Frame(p.stem, PointFile(str(p))) for p in points], "--points"
    return from_scenes(scenes, cfg, data_root, task="check"), f"--scenes {scenes.name}"
