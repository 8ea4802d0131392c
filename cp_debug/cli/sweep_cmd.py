"""`cpdebug sweep`: every frame of a validation set through the reference and the candidates, ranked, classed
(layer-local fault or uniform noise), the worst frames bisected, the metrics with bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (Atol, AutowareParams, Backends, BudgetFile, Checkpoint, ConfigFile, CudnnAlgo,
                                   DataRoot, Deterministic, Dynamic, Exporter, HeldOutCalib, Int8Dir, Junit, LidarTopic,
                                   MatchDistance, MaxShapes, MinShapes, NoCache, OnnxModel, Pictures, Preset, Quiet,
                                   RandomWeights, Recipe, Rrd, Rtol, SampleCalib, SampleData, SampleInputs, Seed,
                                   ToleranceMode, TorchModel, Verbose, dynamic_axes, level_option, model_record,
                                   no_cache, option, recipe_name)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord
from cp_debug.recipes.catalog import DEFAULT

Out = Annotated[Path, typer.Option("--out", help="Folder for shards, sweep.json, frames.parquet, report.html and the "
                                   "worst frames' bisect reports.")]
Scenes = Annotated[Optional[Path], typer.Option(
    help="Info file (mmdet3d / T4), a folder with infos.pkl, a rosbag2 folder (its PointCloud2 clouds, "
         "--lidar-topic), or a folder of point files.")]
METRIC_HELP = ("With --torch/--onnx: the application's decision, bisect's and eval's metrics (top1, argmax, ... or "
               "FUNC(outputs, reference, label) seeing every output by name, and the inputs where it names a "
               "parameter `inputs`), per sample for the reference and each "
               "candidate; a sample whose value changes is a decision flipped (never within precision), the share of "
               "samples that flip in the verdict. Without it, Sigmoid / Softmax outputs are read at 0.5 / argmax.")


Ray = Annotated[Optional[str], typer.Option(
    "--ray", metavar="local|auto|ADDRESS",
    help="Run the shards on Ray actors. 'local': a new Ray cluster on this machine with every CPU and GPU it has "
         "(Ray's own ray.init(address='local'); one box, many GPUs); 'auto': the cluster already running here "
         "(`ray start --head`); or a cluster's address: ray://HOST:10001 (Ray Client) or HOST:6379 (its head).")]
RayWorkers = Annotated[Optional[int], typer.Option(
    "--ray-workers", min=1, help="Ray actors (default: two a GPU for CUDA backends, four where NVIDIA MPS runs, as "
    "the host's CPUs allow, 4 each at least; else one per CPU); up to 4 share each card, evenly.")]
RayCpus = Annotated[Optional[int], typer.Option(
    "--ray-cpus-per-worker", min=1, help="CPUs (and threads) each Ray actor gets (default: the cluster's CPUs "
    "shared out between the actors).")]
Generate = Annotated[Optional[int], option(
    "--generate", min=1, metavar="N", help="A decoder LLM (--onnx file, or --torch causal LM) against ort@DIR's "
    "decoder file over prompts (--inputs input_ids rows, else --n seeded): N greedy tokens each, the share that "
    "flips and at which step, the first flip's accuracy_level cure verified on every prompt (OUT/generate.json).")]


@dataclass(frozen=True)
class SweepRun:
    """How the sweep runs (besides the model and the backends): frames, probes, shards, executor, outputs."""

    out: Path
    scenes: Path | None
    data_root: Path | None
    lidar_topic: str | None
    n: int
    level: str
    bisect_top: int
    shard_size: int
    resume: bool
    ray: str | None
    ray_workers: int | None
    ray_cpus_per_worker: int | None
    bootstrap: int
    calib_scenes: int
    match_distance: float
    deterministic: bool
    html: bool | Path  # True: OUT/report.html
    quiet: bool
    tolerance_mode: str = "model"
    atol: float | None = None
    rtol: float | None = None
    params: tuple[Path, ...] = ()  # Autoware's parameter files: checked first (lint)
    pictures: Path | None = None  # the bisected frames' BEV pictures as PNG files
    rrd: Path | None = None  # a Rerun recording of every frame
    junit: Path | None = None
    budget: Path | None = None
    cudnn_algo: str | None = None
    recipe: str = DEFAULT


def sweep(
    out: Out,
    backends: Backends = None,
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    params: AutowareParams = None,
    random_weights: RandomWeights = False,
    int8: Int8Dir = None,
    scenes: Scenes = None,
    data_root: DataRoot = None,
    lidar_topic: LidarTopic = None,
    n: Annotated[int, option("--n", min=1, help="Held-out synthetic frames when --scenes is not given.")] = 20,
    level: Annotated[Optional[str], level_option("block; stage for --recipe transfusion")] = None,
    bisect_top: Annotated[int, typer.Option("--bisect-top", min=0,
                                            help="Bisect the K worst degraded or diverged frames.")] = 3,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Frames per shard file.")] = 8,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep already in --out.")] = False,
    ray: Ray = None,
    ray_workers: RayWorkers = None,
    ray_cpus_per_worker: RayCpus = None,
    bootstrap: Annotated[int, option("--bootstrap", min=0, help="Bootstrap resamples for the AP intervals.")] = 200,
    calib_scenes: HeldOutCalib = 4,
    calib: SampleCalib = None,
    match_distance: MatchDistance = 2.0,
    deterministic: Deterministic = True,
    cudnn_algo: CudnnAlgo = None,
    atol: Atol = None,
    rtol: Rtol = None,
    tolerance_mode: ToleranceMode = None,
    seed: Seed = 0,
    cache: NoCache = False,
    html: Annotated[Optional[Path], option(
        "--html", metavar="FILE", help="Write the HTML report to FILE (default: OUT/report.html).")] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="Write no HTML report.")] = False,
    pictures: Pictures = None,
    rrd: Rrd = None,
    junit: Junit = None,
    budget: BudgetFile = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    torch_model: TorchModel = None,
    dynamic: Dynamic = None,
    onnx_model: OnnxModel = None,
    inputs: SampleInputs = None,
    data: SampleData = None,
    exporter: Exporter = "auto",
    min_shapes: MinShapes = None,
    max_shapes: MaxShapes = None,
    metric: Annotated[Optional[str], option("--metric", metavar="NAME|FILE.py:FUNC", help=METRIC_HELP)] = None,
    generate: Generate = None,
) -> None:
    """Sweep a validation set: which frames change, which layer is to blame, how often, for which classes and ranges.

    A candidate SPEC@DIR runs the deployed ONNX files of DIR; several candidates form a chain (ref → c1 → c2 …).
    Every candidate is graded at its own precision (a deployed folder: the precision its files hold), as bisect does.
    Each frame's status (sweep.json, frames.parquet, the table, the JUnit file) is its outcome in the same words:
    within_precision, degraded, diverged, or failed.
    --torch / --onnx: any one-graph model over its samples (--inputs or --data), ranked, the worst bisected.
    --onnx or --torch with --min-shapes / --max-shapes: the shape range searched for each candidate's first failing
    shape (a --torch model exported dynamic on the axes the range moves).
    --generate N with --onnx / --torch: a decoder LLM's greedy decode over prompts, the share that flips and where.
    """
    if generate:  # a decoder LLM over prompts: the options it does not read are refused in _sweep_prompts
        unread = {"--data": data, "--min-shapes": min_shapes, "--max-shapes": max_shapes, "--calib": calib,
                  "--scenes": scenes, "--ray": ray, "--dynamic": dynamic, "--config": config, "--int8": int8,
                  "--metric": metric}
        raise typer.Exit(_sweep_prompts(torch_model, onnx_model, backends, generate, inputs, n, seed, out, quiet,
                                        unread))
    axes = dynamic_axes(dynamic, torch_model)  # --dynamic without --torch: one line
    html = not no_html and (html or True)  # a FILE, True (OUT/report.html) or False: on every entry
    ranged = min_shapes is not None or max_shapes is not None
    if ranged:
        from cp_debug.cli.common.shape_range import check_range_given

        check_range_given(min_shapes, max_shapes, torch_model, onnx_model, inputs, data)
    _samples_only(metric, calib, ranged, bool(torch_model or onnx_model))
    if torch_model or onnx_model:
        from cp_debug.cli.common.samples import SampleRun, sweep_samples
        from cp_debug.cli.common.shape_range import sweep_range

        others = dict(scenes=scenes, config=config, checkpoint=checkpoint, params=params, int8=int8, ray=ray,
                      rrd=rrd, pictures=pictures, budget=budget)
        run = SampleRun(torch_model, onnx_model, inputs, data, exporter, seed, backends, tolerance_mode, atol, rtol,
                        quiet or False, junit, deterministic, calib, axes)
        with ThirdParty(verbose=verbose) as third_party:
            if ranged:
                code = sweep_range(run, out, (min_shapes, max_shapes), level=level, bisect_top=bisect_top,
                                   resume=resume, others=others, third_party=third_party, html=html)
            else:
                code = sweep_samples(run, out, level=level, bisect_top=bisect_top, shard_size=shard_size,
                                     resume=resume, others=others, third_party=third_party, html=html, metric=metric)
        raise typer.Exit(code)
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.compare.noise import check_mode
        from cp_debug.determinism import check_conv_algo

        no_cache(cache)
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed, int8=int8)
        recipe = recipe_name(recipe, config)
        _check_recipe(recipe, int8=int8, params=params, scenes=scenes, lidar_topic=lidar_topic, ray=ray, rrd=rrd,
                      pictures=pictures)
        from cp_debug.recipes.catalog import recipe as recipe_of

        level = level or recipe_of(recipe).sweep_level
        run = SweepRun(out=out, scenes=scenes, data_root=data_root, lidar_topic=lidar_topic, n=n, level=level,
                       bisect_top=bisect_top, shard_size=shard_size, resume=resume, ray=ray, ray_workers=ray_workers,
                       ray_cpus_per_worker=ray_cpus_per_worker, bootstrap=bootstrap,
                       calib_scenes=calib_scenes, match_distance=match_distance, deterministic=deterministic,
                       html=html, quiet=quiet or False, tolerance_mode=check_mode(tolerance_mode, atol, rtol),
                       atol=atol, rtol=rtol, params=tuple(params or ()), pictures=pictures, rrd=rrd, junit=junit,
                       budget=budget, cudnn_algo=check_conv_algo(cudnn_algo), recipe=recipe)
        code = _sweep(backends or "torch,ort", model, run, third_party)
    raise typer.Exit(code)


def _samples_only(metric: str | None, calib, ranged: bool, samples: bool) -> None:
    """--metric (a sweep of samples, not of a shape range) and --calib (--torch / --onnx) given where they do not
    go: one line, exit 2."""
    from cp_debug.errors import BadInputError

    if metric is not None and (ranged or not samples):
        raise BadInputError("--metric goes with a sweep of --torch / --onnx samples (--inputs or --data)"
                            + (", not with --min-shapes / --max-shapes" if ranged else ""))
    if calib is not None and not samples:
        raise BadInputError("--calib PATH goes with --torch / --onnx: a CenterPoint sweep's INT8 backends "
                            "calibrate on --calib-n held-out synthetic frames")


def _sweep_prompts(torch_model, onnx_model, backends, generate: int, inputs, n: int, seed: int, out: Path,
                   quiet, unread: dict) -> int:
    """`--generate N` over prompts (`bisect/subjects/prompt_sweep.py`): the lines said, OUT/generate.json written;
    `unread`: options it does not read (given: one line, exit 2)."""
    from cp_debug.errors import BadInputError

    given = [o for o, v in unread.items() if v]
    if given:
        raise BadInputError(f"{', '.join(given)}: not with --generate (a decoder's prompts: --inputs input_ids rows, "
                            "or --n seeded ones)")
    if not (torch_model or onnx_model):
        raise BadInputError("--generate sweeps a decoder LLM over prompts: give --onnx FILE or --torch FILE.py:FUNC, "
                            "and the candidate as ort@DIR")
    from cp_debug.backends.spec import NOISE_CHECK, parse_backends
    from cp_debug.api.prompt_bisect import bisect_flip
    from cp_debug.bisect.subjects.prompt_sweep import sweep_prompts, write_prompt_sweep

    pairs = parse_backends(backends or "ort", rule=NOISE_CHECK)
    with ThirdParty(verbose=False):
        result = sweep_prompts(torch_model or str(onnx_model), bool(torch_model), [s for _, s in pairs], generate,
                               inputs, n, seed)
        result = bisect_flip(result, bool(torch_model), pairs, seed, out)  # as `bisect --generate` on that prompt
        path = write_prompt_sweep(result, out)
    if not quiet:
        for line in result.lines():
            typer.echo(line)
        typer.echo(f"wrote {path}")
    return result.exit_code


def _check_recipe(recipe: str, **given) -> None:
    """What the recipe does not take of this command (`Recipe.refuses`: CenterPoint's options, or not built for it
    yet), said before anything runs or is written; --scenes only where it is a rosbag2 folder."""
    from cp_debug.cli.common.preflight import refuse_options

    scenes = given.pop("scenes")
    if scenes is not None and scenes.is_dir() and (scenes / "metadata.yaml").is_file():
        given["scenes"] = "a rosbag2 folder"
    refuse_options(recipe, "sweep", {f"--{k.replace('_', '-')}": v for k, v in given.items()},
                   " (or not built for {title} yet)")


def _check_libraries(run: SweepRun | None = None) -> None:
    """The optional libraries this sweep will need, each missing one said in one line (exit 3) before a model loads:
    pyarrow for frames.parquet, which every sweep writes (it used to fail after the whole work), Ray for --ray."""
    from cp_debug.cli.common.preflight import check_library

    check_library("pyarrow", "cpdebug sweep writes frames.parquet, which needs pyarrow: "
                             "pip install 'cp-debug[parquet]'")
    if run is not None and run.ray:
        from cp_debug.sweep.executor import RAY_HINT

        check_library("ray", RAY_HINT)


def _devkit_refused(steps, metrics: dict | None) -> None:
    """One line where nuscenes-devkit gave no mAP/NDS for a lane (not installed, or its inputs refused): sweep.json
    holds the reason in the lane's `devkit` entry, and the bootstrap's AP changes are there still."""
    refused = {lane: entry["error"] for lane, entry in ((metrics or {}).get("devkit") or {}).items()
               if isinstance(entry, dict) and entry.get("error")}
    for reason in dict.fromkeys(refused.values()):
        lanes = ", ".join(lane for lane, why in refused.items() if why == reason)
        steps.warn(f"no mAP/NDS for {lanes}: {reason}")


def _served_hint(steps, executor: dict) -> None:
    """Where a `--ray local` sweep of its own process spent seconds on Ray's start and its workers' before the first
    of them had its sessions open, a line that says a server keeps them for the next sweep (`sweep/kept.py`); none
    where they were kept already, in the server, or for another executor."""
    from cp_debug.sweep import kept

    line = executor.get("timeline") or {}
    if executor.get("kind") != "ray" or executor.get("address") != "local" or executor.get("workers_kept") \
            or kept.keeping() or line.get("start") is None or executor.get("sessions_seconds") is None:
        return
    waited = executor["sessions_seconds"] - line["start"]
    steps.note(f"Ray and its workers took {waited:.1f} s before the first worker's sessions were open; under "
               "`cpdebug serve` they stay up, and the next sweep of these settings starts its frames at once")


def _pictures(run: SweepRun, steps, outcome):
    """The bisected frames' bird's-eye pictures, where report.html or --pictures wants them (else None)."""
    if not (run.html or run.pictures):
        return None
    from cp_debug.sweep.report import bisected_pictures

    with steps.step("drawing the bisected frames' bird's-eye pictures"):
        return bisected_pictures(outcome)


def _writing(html, frames: int) -> str:
    """The step of writing a sweep's files: what they are, for how many frames."""
    files = "sweep.json, frames.parquet and report.html" if html else "sweep.json and frames.parquet"
    return f"writing {files} ({frames} frames)"


def _sweep(backends: str, model: ModelRecord, run: SweepRun, third_party) -> int:
    from cp_debug.bisect.subjects.subject import LEVELS
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, stdout_console
    from cp_debug.errors import BadInputError
    from cp_debug.recipes import catalog
    from cp_debug.sweep.records import SweepSettings
    from cp_debug.sweep.report import write_all
    from cp_debug.sweep.session import SweepOptions, run_sweep
    from cp_debug.sweep.shards import locked
    from cp_debug.sweep.summary import print_summary

    from cp_debug.compare.noise import check_mode

    preset, quiet = model.model_name, run.quiet
    check_mode(run.tolerance_mode)
    from cp_debug.cli.common.preflight import check_outputs, check_report_writers

    check_outputs(run.rrd)
    _check_libraries(run)
    check_report_writers(rrd=run.rrd, pictures=run.pictures)
    recipe = catalog.recipe(run.recipe)
    recipe.config(preset)
    if run.level not in LEVELS:
        raise BadInputError(f"--level {run.level!r}: use one of {', '.join(LEVELS)}")
    from cp_debug.backends.spec import REF_CANDIDATES, parse_backends

    pairs = parse_backends(backends, rule=REF_CANDIDATES)
    labels = tuple(label for label, _ in pairs)
    from cp_debug.cli.common.output import budget_verdict, read_budget_for
    from cp_debug.cli.common.preflight import check_outputs
    from cp_debug.cli.common.what_runs import runs_on

    check_outputs(run.junit)
    budget = read_budget_for(run.budget, "sweep")
    settings = SweepSettings(labels, preset=preset, recipe=recipe, level=run.level, checkpoint=model.checkpoint,
                             random_weights=model.random_weights, seed=model.seed, int8_dir=model.int8,
                             deterministic=run.deterministic, cudnn_algo=run.cudnn_algo,
                             max_dist=run.match_distance,
                             calib_scenes=run.calib_scenes, tolerance_mode=run.tolerance_mode, atol=run.atol,
                             rtol=run.rtol)
    opts = SweepOptions(settings, Path(run.out), scenes=run.scenes, data_root=run.data_root, n=run.n,
                        shard_size=run.shard_size, resume=run.resume, bisect_top=run.bisect_top, ray=run.ray,
                        ray_workers=run.ray_workers, ray_cpus_per_worker=run.ray_cpus_per_worker,
                        bootstrap=run.bootstrap, model_record=model,
                        lidar_topic=run.lidar_topic, runs_on=runs_on())
    steps = StepProgress(quiet, stream=third_party.terminal)
    from cp_debug.cli.common.preflight import lint_first

    # the checks run first: their reports go into sweep.json's `lint` as well as on the terminal
    lint_doc = [r.to_json() for r in lint_first(model, run.params, [s.onnx_dir for _, s in pairs],
                                                third_party.terminal, run.recipe)] or None
    with locked(opts.out):
        outcome = run_sweep(opts, progress=lambda text, total: progress_bar(text, total, quiet, third_party.terminal),
                            step=steps.step)
        _served_hint(steps, outcome.executor)
        _devkit_refused(steps, outcome.metrics)
        code, checks, verdict = int(outcome.outcome.exit_code), (), None
        if budget is not None:
            from cp_debug.eval.gates import budget_doc
            from cp_debug.sweep.budget import budget_figures

            checks, code = budget_verdict(budget, budget_figures(outcome.results, outcome.ranked, outcome.metrics,
                                                                   opts.settings, budget.heads),
                                          third_party.terminal)
            verdict = budget_doc(budget, checks)
        pictures = _pictures(run, steps, outcome)
        with steps.step(_writing(run.html, len(outcome.results))):  # after the frames: its own step
            doc = write_all(outcome, opts, html_report=run.html, pictures=pictures, budget=verdict, lint=lint_doc,
                            runs_on=runs_on())
        if run.pictures:
            from cp_debug.report.bev_plot import write_pictures

            write_pictures([p for by_label in pictures.values() for c in by_label.values() for p in c.pictures],
                           run.pictures)
        if run.rrd:
            from cp_debug.sweep.rerun import sweep_recording

            with steps.step(f"writing the Rerun recording {run.rrd}"):
                sweep_recording(outcome, opts, run.rrd)
    print_summary(doc, stdout_console())
    if run.junit is not None:
        from cp_debug.report.junit import write_junit
        from cp_debug.sweep.summary import junit_suite

        write_junit(run.junit, [junit_suite(doc, [c.junit_case("cpdebug.budget") for c in checks])])
    return int(code)
