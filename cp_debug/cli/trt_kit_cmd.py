"""`cpdebug trt-kit`: a folder for the target — the ONNX pair (`--recipe transfusion`: Autoware's one
transfusion.onnx; `--torch FILE.py:FUNC` / `--onnx FILE`: any model's one graph and its samples), every stage's inputs
per frame, the reference's outputs, trtexec / polygraphy scripts and a manifest; no TensorRT needed here. Its results
come back through `trt-*@KIT`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (AutowareParams, Checkpoint, ConfigFile, Exporter, OnnxModel, Preset, Quiet,
                                         RandomWeights, Recipe, Seed, TorchModel, Verbose, model_record, option,
                                         recipe_name)
from cp_debug.cli.common.quiet import ThirdParty


def trt_kit(
    out: Annotated[Path, option(
        "--out", metavar="DIR", help="The kit's folder (written whole; SPEC@KIT reads its results back).")],
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    onnx_dir: Annotated[Optional[Path], option(
        "--onnx-dir", metavar="DIR", help="A deployed ONNX pair (pts_voxel_encoder.onnx, pts_backbone_neck_head.onnx) "
        "to put in the kit instead of cp_debug's export of the model; checked against the model.")] = None,
    params: AutowareParams = None,
    fix: Annotated[Optional[Path], typer.Option(
        "--fix", metavar="DIR", help="A `cpdebug fix --out DIR` folder: its deployable pair (--recipe transfusion: "
        "its FP16 transfusion.onnx) goes in the kit.")] = None,
    points: Annotated[Optional[list[Path]], option(
        "--points", help="Point files, one frame each (repeat the option); bisect reads them as --points.")] = None,
    scenes: Annotated[Optional[Path], option(
        "--scenes", help="Frames of an info file, a folder with infos.pkl, a rosbag2 folder or a folder of point "
        "files.")] = None,
    n: Annotated[Optional[int], option("--n", help="N held-out synthetic frames.")] = None,
    precision: Annotated[Optional[list[str]], typer.Option(
        help="Precision the target runs (repeat for more): fp16 (default; --recipe transfusion: the --params' "
             "trt_precision where they set it), fp32, int8. One the pair does not hold is converted by cp_debug's "
             "transform into <precision>/ (TensorRT 11 takes precision from the ONNX).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing KIT.")] = False,
    torch_model: TorchModel = None,
    onnx_model: OnnxModel = None,
    inputs: Annotated[Optional[list[Path]], option(
        "--inputs", metavar="PATH", help="With --torch/--onnx: the samples, one .npz each or a folder of them (repeat "
        "the option); each is one frame of the kit. Default: --torch's example inputs.")] = None,
    exporter: Exporter = "auto",
    min_shapes: Annotated[Optional[list[str]], option(
        "--min-shapes", metavar="NAME:DxD[,…]", help="With --torch/--onnx: an input's smallest shape in the engine's "
        "profile, as trtexec's minShapes spells it (name:1x3x224x224, several joined by ',' or the option "
        "repeated); give --max-shapes too (a --torch model is exported dynamic on the axes the range moves). "
        "Default: the smallest over the samples.")] = None,
    opt_shapes: Annotated[Optional[list[str]], option(
        "--opt-shapes", metavar="NAME:DxD[,…]", help="The shape TensorRT tunes for (default: the largest sample's).")
    ] = None,
    max_shapes: Annotated[Optional[list[str]], option(
        "--max-shapes", metavar="NAME:DxD[,…]", help="An input's largest shape in the profile (default: the largest "
        "over the samples).")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Write a kit to run on the target with trtexec or polygraphy; read its results back with
    `cpdebug bisect --backends torch,trt-fp16@KIT` (--recipe transfusion: `cpdebug bisect --onnx KIT/transfusion.onnx
    --inputs KIT/inputs/frame_000/transfusion.npz --backends ort,trt-fp16@KIT`; --torch/--onnx: the command the kit's
    README gives). Two kits' results of one file: `cpdebug bisect --onnx KIT_A/<file>.onnx --inputs … --backends
    trt-fp16@KIT_A,trt-fp16@KIT_B`."""
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.errors import BadInputError
        from cp_debug.kit.writer import KitRequest, frames_of, write_kit

        if torch_model or onnx_model:
            given = {"--recipe": recipe, "--config": config, "--checkpoint": checkpoint, "--onnx-dir": onnx_dir,
                     "--fix": fix, "--params": params, "--points": points, "--scenes": scenes, "--n": n}
            _graph_kit(out, torch_model, onnx_model, inputs or [], exporter, (min_shapes, opt_shapes, max_shapes),
                       seed, precision, force, [k for k, v in given.items() if v], quiet, third_party.terminal)
            return
        if inputs or min_shapes or opt_shapes or max_shapes:
            raise BadInputError("--inputs and --min/--opt/--max-shapes go with --torch FILE.py:FUNC or --onnx FILE")
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        rname = recipe_name(recipe, config)
        if onnx_dir is not None and fix is not None:
            raise BadInputError("give --onnx-dir DIR or --fix DIR, not both")
        from cp_debug.recipes.catalog import DEFAULT, recipe as recipe_of

        r = recipe_of(rname)
        kit = r.plugin("kit")
        kit.check_model(model)  # TransFusion-L: an unknown preset is said before anything loads
        source, kind, doc = onnx_dir, "deployed", None
        if fix is not None:
            from cp_debug.fix.artifact import read_fix
            from cp_debug.kit.content import check_fix

            doc = read_fix(fix)
            check_fix(fix, doc, model, rname, doc.get("recipe") or DEFAULT)  # none named: the default's
            source, kind = fix, "fix"
        precision = kit.precisions(fix, doc, precision, tuple(params or ()))
        if source is None:
            kind = "export"
        req = KitRequest(model=model, out=out, onnx_dir=source, source_kind=kind, points=tuple(points or ()),
                         frames=frames_of(scenes, n, model.model_name, r),
                         precisions=tuple(dict.fromkeys(p.lower() for p in (precision or ["fp16"]))), force=force,
                         recipe=r, params=tuple(params or ()), fix_doc=doc)
        if req.points and req.frames:
            raise BadInputError("give --points FILE…, --scenes DIR or --n N: one source of frames")
        from cp_debug.cli.common.output import StepProgress
        from cp_debug.cli.common.preflight import lint_first
        from cp_debug.kit.writer import check_request

        check_request(req)  # a bad --out or --onnx-dir is said before the checks
        # --params, or the deployed folder's own parameter files: checked against the model before the reference runs
        # (TransFusion-L: a fix's transfusion.onnx too, against the --params)
        lint_first(model, params, [onnx_dir, fix if kit.LINTS_FIX else None], third_party.terminal, rname)
        progress = StepProgress(quiet=quiet, stream=third_party.terminal)
        _print(write_kit(req, progress=progress))


def _graph_kit(out: Path, torch_model, onnx_model, inputs: list[Path], exporter: str, ranges: tuple, seed: int,
               precision, force: bool, refused: list[str], quiet: bool, terminal) -> None:
    """`trt-kit --torch FILE.py:FUNC | --onnx FILE`: any one graph's kit (`kit/graph_kit.py`), written whole."""
    from cp_debug.cli.common.output import StepProgress
    from cp_debug.errors import BadInputError
    from cp_debug.kit.content import GraphSource
    from cp_debug.kit.writer import KitRequest, check_request, write_kit
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.recipes.catalog import of_any_model

    if torch_model and onnx_model:
        raise BadInputError("give one model: --torch FILE.py:FUNC or --onnx FILE")
    if refused:
        raise BadInputError(f"{', '.join(refused)}: a kit of a --torch / --onnx model takes its samples (--inputs), "
                            "not a recipe's model, frames or deployed files")
    for p in inputs:
        if not p.exists():
            raise BadInputError(f"--inputs {p} is not a file or folder")
    from cp_debug.samples.shapes import parse_shapes

    given = {k: parse_shapes(t, f"--{k}-shapes") for k, t in zip(("min", "opt", "max"), ranges) if t}
    graph = GraphSource(torch_model, onnx_model, tuple(inputs), given, exporter)
    req = KitRequest(model=ModelRecord(None, seed=seed), out=out, source_kind="torch" if torch_model else "onnx",
                     precisions=tuple(dict.fromkeys(p.lower() for p in (precision or ["fp16"]))), force=force,
                     recipe=of_any_model(), graph=graph)
    check_request(req)
    _print(write_kit(req, progress=StepProgress(quiet=quiet, stream=terminal)))


def _print(summary) -> None:
    """What was written, and the command for the target."""
    from cp_debug.cli.common.output import stdout_console

    console = stdout_console()
    console.print(f"kit written to {summary.out}: {len(summary.frames)} frame(s), stages "
                  f"{', '.join(summary.stages)}, precisions {', '.join(summary.precisions)} (the ONNX holds "
                  f"{summary.held_precision}); {summary.files} files, {summary.bytes / 2**20:.1f} MiB")
    for note in summary.notes:
        console.print(f"  {note}")
    console.print(f"on the target: bash {summary.out}/run_trtexec.sh {summary.precisions[0]}  (or "
                  f"run_polygraphy.sh; see {summary.out}/README.md)", soft_wrap=True)
