"""`cpdebug bench`: per-stage latency (median, p90) of CenterPoint's staged pipeline per backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cp_debug.cli.common.options import (ConfigFile, Checkpoint, Csv, CudnnAlgo, Deterministic, Json, Points, Preset,
    Quiet,
                                   RandomWeights, Recipe, Seed, Verbose, backends_option, model_record,
                                   recipe_name)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord

if TYPE_CHECKING:
    from cp_debug.backends.spec import BackendSpec


def bench(
    recipe: Recipe = None,
    backends: Annotated[str, backends_option(
        "SPEC[,SPEC…]: the backends timed side by side (no reference), no spec twice, e.g. "
        "torch,ort,ort-cpu-fp16,torch-cuda-tf32.")] = "torch,ort",
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    points: Points = None,
    repeat: Annotated[int, typer.Option(min=1, help="Timed runs per backend.")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 3,
    deterministic: Deterministic = True,
    cudnn_algo: CudnnAlgo = None,
    json_out: Json = None,
    csv: Csv = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Time voxelize, voxel encoder, scatter, backbone/neck/head and decode + NMS per backend after warm-up (on
    --points, else a held-out synthetic scene); the JSON and CSV hold one row per backend and stage.
    """
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        preset = model.model_name
        from cp_debug.bench.run import BenchOptions
        from cp_debug.determinism import check_conv_algo

        from cp_debug.recipes.catalog import recipe as recipe_of

        r = recipe_of(recipe_name(recipe, config))
        r.plugin("bench")  # a recipe without bench rows is one line (CenterPoint's are the only ones)
        opts = BenchOptions(_labels(backends), preset, checkpoint, random_weights, seed, points, repeat, warmup,
                            deterministic, cudnn_algo=check_conv_algo(cudnn_algo), recipe=r)
        _bench(opts, model, json_out=json_out, csv=csv, quiet=quiet or json_out == "-", third_party=third_party)


def _labels(backends: str) -> tuple[tuple[str, BackendSpec], ...]:
    """(label as typed, spec) per backend, distinct."""
    from cp_debug.backends.spec import SPECS, parse_backends

    return tuple(parse_backends(backends, rule=SPECS))


def _bench(opts, model: ModelRecord, *, json_out: str | None, csv: Path | None, quiet: bool,
           third_party: ThirdParty) -> None:
    from cp_debug.bench.run import run_bench
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, finish
    from cp_debug.cli.common.preflight import check_inputs, check_outputs
    from cp_debug.files import write_text_atomic

    opts.recipe.config(opts.preset)  # an unknown preset said before torch loads
    check_inputs(checkpoint=opts.checkpoint, points=opts.points)
    check_outputs(json_out, csv)
    steps = StepProgress(quiet, stream=third_party.terminal)
    report = run_bench(opts, progress=lambda text, total: progress_bar(text, total, quiet, third_party.terminal),
                       step=steps.step)
    data = {**report.to_json(), "model_record": model.to_json()}
    finish(data, json_out, third_party, lambda console: _print(report, console))
    if csv is not None:
        import pandas as pd

        write_text_atomic(csv, pd.DataFrame(data["rows"]).to_csv(index=False))


def _print(report, console) -> None:
    from rich.table import Table

    t = Table(title=f"Latency per stage (ms, median / p90 of {report.repeat} runs after {report.warmup} warm-up) — "
                    f"{report.preset}, {report.num_points} points", title_justify="left")
    t.add_column("stage")
    for r in report.results:
        t.add_column(r.backend, justify="right")
    for i, stage in enumerate(row.stage for row in report.results[0].rows):
        t.add_row(stage, *[f"{r.rows[i].median_ms:.2f} / {r.rows[i].p90_ms:.2f}" for r in report.results],
                  style="bold" if stage == "total" else None)
    if any(r.peak_torch_gpu_mb is not None for r in report.results):
        t.add_row("peak torch GPU MB", *[f"{r.peak_torch_gpu_mb:.0f}" if r.peak_torch_gpu_mb is not None else "—"
                                         for r in report.results])
        t.add_row("GPU used MB", *[f"{r.gpu_used_mb:.0f}" if r.gpu_used_mb is not None else "—"
                                   for r in report.results])
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    for r in report.results:
        for n in r.notes:
            console.print(f"[dim]note ({r.backend}): {n}[/dim]", highlight=False, soft_wrap=True)
