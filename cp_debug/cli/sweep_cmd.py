"""`cpdebug sweep`: every frame of a validation set through the reference and the candidates, ranked, classed
(layer-local fault or uniform noise), the worst frames bisected, the metrics with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._quiet import ThirdParty, Verbose


def sweep(
    out: Annotated[Path, typer.Option("--out", help="Folder for shards, sweep.json, frames.parquet, report.html and "
                                      "the worst frames' bisect reports.")],
    backends: Annotated[str, typer.Option("--backends", "-b", help="REF,CAND[,CAND…]; a candidate SPEC@DIR runs the "
                                          "deployed ONNX files of DIR. Several candidates form a chain.")] = "torch,ort",
    preset: Annotated[str, typer.Option(help="CenterPoint preset: demo, tiny, awml-base, awml-j6gen2, awml-760.")] = "demo",
    checkpoint: Annotated[Optional[Path], typer.Option(help="CenterPoint checkpoint (mmengine .pth).")] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Seeded random weights.")] = False,
    int8: Annotated[Optional[Path], typer.Option("--int8", metavar="DIR", help="A PTQ dir or AWML PTQ checkpoint "
                                                 "(as bisect --int8).")] = None,
    scenes: Annotated[Optional[Path], typer.Option(help="Info file (mmdet3d / T4), a folder with infos.pkl, or a "
                                                   "folder of point files.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Held-out synthetic frames when --scenes is not given.")] = 20,
    level: Annotated[str, typer.Option(help="Probe level: stage, block, layer, all.")] = "block",
    bisect_top: Annotated[int, typer.Option("--bisect-top", min=0, help="Bisect the K worst diverged frames.")] = 3,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Frames per shard file.")] = 8,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep already in --out.")] = False,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Run the shards on Ray: 'auto' or a cluster address.")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", min=1, help="Ray actors (default: one per "
                                                       "GPU for CUDA backends, else one per CPU).")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for the AP intervals.")] = 200,
    calib_scenes: Annotated[int, typer.Option(min=0, help="Held-out scenes that calibrate INT8 backends.")] = 4,
    match_distance: Annotated[float, typer.Option(min=0.01, help="Centre distance (m) matching a candidate box to "
                                                  "a reference box.")] = 2.0,
    deterministic: Annotated[bool, typer.Option(help="TF32 off, cuDNN deterministic, fixed seeds and ORT options.")] = True,
    seed: Annotated[int, typer.Option(help="Seed for weights, bootstrap and the model's example scan.")] = 0,
    html: Annotated[bool, typer.Option(help="Write report.html.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Verbose = False,
) -> None:
    """Sweep a validation set: which frames change, which layer is to blame, how often, for which classes and ranges.

    Exit codes: 0 no frame diverges, 1 a frame diverges or fails, 2 bad input or usage, 3 backend not available here.
    """
    with handle_errors(), ThirdParty(verbose=verbose) as third_party:
        code = _sweep(out, backends, preset, checkpoint, random_weights, int8, scenes, n, level, bisect_top, shard_size,
                      resume, ray, ray_workers, bootstrap, calib_scenes, match_distance, deterministic, seed, html,
                      quiet, third_party)
    raise typer.Exit(code)


def _sweep(out, backends, preset, checkpoint, random_weights, int8, scenes, n, level, bisect_top, shard_size, resume,
           ray, ray_workers, bootstrap, calib_scenes, match_distance, deterministic, seed, html, quiet,
           third_party) -> int:
    from cp_debug.bisect.subject import LEVELS
    from cp_debug.cli._bar import progress_bar
    from cp_debug.cli._output import StepProgress, stdout_console
    from cp_debug.errors import BadInputError
    from cp_debug.models.centerpoint.config import get_preset
    from cp_debug.sweep.report import print_summary, write_all
    from cp_debug.sweep.session import SweepOptions, run_sweep
    from cp_debug.sweep.worker import SweepSettings

    get_preset(preset)
    if level not in LEVELS:
        raise BadInputError(f"--level {level!r}: use one of {', '.join(LEVELS)}")
    labels = tuple(t.strip() for t in backends.split(",") if t.strip())
    settings = SweepSettings(labels, preset=preset, level=level, checkpoint=str(checkpoint) if checkpoint else None,
                             random_weights=random_weights, seed=seed, int8_dir=str(int8) if int8 else None,
                             deterministic=deterministic, max_dist=match_distance, calib_scenes=calib_scenes)
    opts = SweepOptions(settings, Path(out), scenes=scenes, n=n, shard_size=shard_size, resume=resume,
                        bisect_top=bisect_top, ray=ray, ray_workers=ray_workers, bootstrap=bootstrap)
    steps = StepProgress(quiet, stream=third_party.terminal)
    outcome = run_sweep(opts, progress=lambda text, total: progress_bar(text, total, quiet, third_party.terminal),
                        step=steps.step)
    doc = write_all(outcome, opts, html_report=html)
    print_summary(doc, stdout_console())
    return 1 if outcome.any_diverged else 0
