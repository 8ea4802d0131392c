"""`cpdebug infer`: run a recipe's stages with torch or ONNX Runtime per stage (`Recipe.infer_stages`: CenterPoint's
pair), save maps and boxes; a recipe run end to end in torch (`Recipe.infer_scan`, `--recipe transfusion`): its head
outputs (AWML's names), proposal classes and boxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (Checkpoint, ConfigFile, LoadDim, NoRotY, Points, Preset, Quiet, RandomWeights,
                                   Recipe, RotY, Seed, UseDim, Verbose, model_record, option, recipe_name, rot_y)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord

STAGE_BACKENDS = ("torch", "ort")


def infer(
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    points: Points = None,
    load_dim: LoadDim = None,
    use_dim: UseDim = None,
    out: Annotated[Path,
                   option("--out", help="Output .npz: heatmap, reg, height, dim, rot, vel, boxes, scores, labels "
                                        "(--recipe transfusion: dense_heatmap, heatmap, query_heatmap_score, center, "
                                        "height, dim, rot, vel, query_labels, boxes, scores, labels).")]
    = Path("cpdebug-out/infer.npz"),
    encoder: Annotated[str, typer.Option(help="Backend of pts_voxel_encoder: torch or ort.")] = "torch",
    backbone: Annotated[str, typer.Option(help="Backend of pts_backbone_neck_head: torch or ort.")] = "torch",
    onnx_dir: Annotated[Optional[Path], option(
        "--onnx-dir", help="Directory with the two ONNX files; exported to a temp dir if ort is asked and this is "
        "omitted.")] = None,
    device: Annotated[str, option(
        "--device", help="cpu or cuda (torch stages, torch glue, ORT's CUDA provider).")] = "cpu",
    rot_y_axis_reference: RotY = None,
    no_rot_y_axis_reference: NoRotY = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run voxelize -> encoder -> scatter -> backbone/neck/head -> decode and write the head maps and boxes."""
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        from cp_debug.recipes.catalog import recipe as recipe_of

        r = recipe_of(recipe_name(recipe, config))
        rot_y_axis_reference = rot_y(rot_y_axis_reference, no_rot_y_axis_reference)
        if r.infer_scan is not None:  # one scan end to end in torch: the stage options are the pair's
            _stages_refused(r.name, encoder=encoder, backbone=backbone, onnx_dir=onnx_dir, rot_y=rot_y_axis_reference)
            _infer_end_to_end(r, model, points, out, device=device, quiet=quiet, third_party=third_party,
                              load_dim=load_dim, use_dim=use_dim)
            return
        _infer(r, model, points, out, encoder=encoder, backbone=backbone, onnx_dir=onnx_dir, device=device,
               rot_y=rot_y_axis_reference, quiet=quiet, third_party=third_party, load_dim=load_dim, use_dim=use_dim)



def _stages_refused(recipe: str, *, encoder: str, backbone: str, onnx_dir: Path | None, rot_y: bool | None) -> None:
    """A recipe run end to end in torch: the pair's stage options are refused by name."""
    from cp_debug.cli.common.preflight import refuse_options

    given = {"--encoder": encoder != "torch", "--backbone": backbone != "torch", "--onnx-dir": onnx_dir is not None,
             "--(no-)rot-y-axis-reference": rot_y is not None}
    refuse_options(recipe, "infer", given,
                   after=" (it runs the torch model; without --checkpoint its weights are random)")


def _infer_end_to_end(r, model: ModelRecord, points: Path | None, out: Path, *, device: str, quiet: bool,
                      third_party: ThirdParty, load_dim: int | None, use_dim: str | None) -> None:
    """Recipe `r` on one scan in torch (`Recipe.infer_scan`): its outputs by name, the decoded boxes and what the
    recipe says of the run, written to `out`."""
    from cp_debug.cli.common.output import StepProgress, stdout_console
    from cp_debug.errors import BackendUnavailableError

    cfg = r.config(model.model_name)  # an unknown preset fails before torch is imported
    _check_options(model, out, encoder="torch", backbone="torch", onnx_dir=None, device=device)
    scan = _scan(cfg, points, load_dim, use_dim)
    progress = StepProgress(quiet, stream=third_party.terminal)
    with progress.step("loading torch"):
        import numpy as np
        import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked but torch sees no CUDA device; use --device cpu")
    from cp_debug.lidar.synthetic import synthetic_scene

    pts = scan.points if scan is not None else synthetic_scene(model.seed, cfg).points
    with progress.step(f"building {cfg.name}"):
        loaded = r.load_model(model)
    with progress.step(f"running {r.title} ({device})"):
        arrays, dets, timings, said = r.infer_scan(loaded, pts, device)
    arrays.update(boxes=dets.boxes, scores=dets.scores, labels=dets.labels, class_names=np.asarray(cfg.class_names),
                  model_record=np.asarray(json.dumps(model.to_json())), recipe=np.asarray(r.name))
    _save_npz(out, arrays)
    console = stdout_console()
    _scan_lines(console, scan)
    counts = ", ".join(f"{n} {c}" for n, c in dets.count_by_class().items())
    console.print(f"{len(dets)} boxes ({counts}) {said}from {loaded.weights}", highlight=False, soft_wrap=True)
    console.print("stage seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in timings.items()), highlight=False,
                  soft_wrap=True)
    console.print(str(out), highlight=False, soft_wrap=True)
    third_party.print_count(console, where=None)


def _scan(cfg, points: Path | None, load_dim: int | None, use_dim: str | None):
    """The --points file loaded as the config loads it (None: the synthetic scan); checked before the slow imports."""
    from cp_debug.data.point_files import load_point_file, parse_use_dim
    from cp_debug.errors import BadInputError

    if (load_dim is not None or use_dim is not None) and points is None:
        raise BadInputError("--load-dim/--use-dim describe a --points file: give --points FILE or drop them")
    if points is None:
        return None
    return load_point_file(points, cfg, load_dim=load_dim, use_dim=parse_use_dim(use_dim))


def _scan_lines(console, scan) -> None:
    """What loading the --points file did, in a line, and its warnings."""
    if scan is None:
        return
    console.print(f"{scan.points_in_range} of {scan.points_read} points in range "
                  f"({scan.out_of_range_dropped} outside, {scan.non_finite_dropped} NaN/Inf dropped)",
                  highlight=False, soft_wrap=True)
    for w in scan.warnings:
        console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _check_options(model: ModelRecord, out: Path, *, encoder: str, backbone: str, onnx_dir: Path | None,
                   device: str) -> None:
    """The options `cpdebug infer` can check before the slow imports: one clear line for each bad one."""
    from cp_debug.cli.common.preflight import check_inputs
    from cp_debug.errors import BadInputError

    for label, value in (("--encoder", encoder), ("--backbone", backbone)):
        if value not in STAGE_BACKENDS:
            raise BadInputError(f"{label} {value!r} is not a stage backend: choose one of {', '.join(STAGE_BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise BadInputError(f"--device {device!r}: choose cpu or cuda")
    if out.suffix != ".npz":
        raise BadInputError(f"--out {out} must end in .npz")
    check_inputs(checkpoint=model.checkpoint)
    if out.is_dir():
        raise BadInputError(f"--out {out} is a directory: give a file name ending in .npz")
    if onnx_dir is not None and not onnx_dir.is_dir():
        raise BadInputError(f"--onnx-dir {onnx_dir} is not a directory (write one with `cpdebug export --out DIR`)")


def _infer(r, model: ModelRecord, points: Path | None, out: Path, *, encoder: str, backbone: str, onnx_dir: Path | None,
           device: str, rot_y: bool | None, quiet: bool, third_party: ThirdParty, load_dim: int | None = None,
           use_dim: str | None = None) -> None:
    """Recipe `r`'s stages one by one, each on its backend (`Recipe.infer_stages`: CenterPoint's pair)."""
    from cp_debug.cli.common.output import StepProgress, stdout_console
    from cp_debug.errors import BackendUnavailableError

    cfg = r.config(model.model_name)
    seed = model.seed
    _check_options(model, out, encoder=encoder, backbone=backbone, onnx_dir=onnx_dir, device=device)
    import numpy as np

    scan = _scan(cfg, points, load_dim, use_dim)  # checked before the slow imports
    pts = scan.points if scan is not None else None

    progress = StepProgress(quiet, stream=third_party.terminal)
    with progress.step("loading torch"):
        import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked but torch sees no CUDA device; use --device cpu")

    from cp_debug.lidar.synthetic import synthetic_scene

    if pts is None:
        pts = synthetic_scene(seed, cfg).points

    def load():
        with progress.step(f"building {model.model_name} ({r.weights_label(model)})"):
            return r.load_model(model)

    loaded, head, dets, timings = r.infer_stages(cfg, pts, load, encoder=encoder, backbone=backbone,
                                                 onnx_dir=onnx_dir, device=device, rot_y=rot_y, progress=progress,
                                                 quiet=quiet)
    arrays = {name: head[name] for name in head}
    arrays.update(boxes=dets.boxes, scores=dets.scores, labels=dets.labels, class_names=np.asarray(cfg.class_names),
                  model_record=np.asarray(json.dumps(model.to_json())))  # the run's model, as JSON text
    _save_npz(out, arrays)

    console = stdout_console()
    _scan_lines(console, scan)
    counts = ", ".join(f"{n} {c}" for n, c in dets.count_by_class().items())
    console.print(f"{len(dets)} boxes ({counts}) from {loaded.weights}", highlight=False, soft_wrap=True)
    console.print("stage seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in timings.items()), highlight=False,
                  soft_wrap=True)
    console.print(str(out), highlight=False, soft_wrap=True)
    third_party.print_count(console, where=None)


def _save_npz(path: Path, arrays: dict) -> None:
    import numpy as np

    from cp_debug.files import write_atomic

    write_atomic(path, lambda f: np.savez(f, **arrays), parents=True)
