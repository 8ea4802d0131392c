"""`cpdebug bisect`: where do the candidates part from the reference, and why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cp_debug.cli.common.options import (Atol, AutowareParams, BudgetFile, Checkpoint, ConfigFile, Csv, CudnnAlgo,
                                   Deterministic, Dynamic, Exporter, Html, Inputs, Int8Dir, Json, Junit, LoadDim,
                                   ModelFactory, NoCache, OnnxModel, Parquet, Pictures, Points, Preset, Quiet,
                                   RandomWeights, Recipe, Rrd, Rtol, ToleranceMode, TorchModel, TorchSeed, UseDim,
                                   Verbose, backends_option, calib_files_option, dynamic_axes, exclude_int8_option,
                                   level_option, model_record, no_cache, option, recipe_name)
from cp_debug.cli.common.quiet import ThirdParty

if TYPE_CHECKING:
    from cp_debug.api.bisect_request import BisectRequest, SubjectRequest
    from cp_debug.backends.spec import BackendSpec

@dataclass(frozen=True)
class BisectOutputs:
    json_out: str | None = None
    csv: Path | None = None
    parquet: Path | None = None
    html: Path | None = None
    bundle: Path | None = None
    quiet: bool = False
    pictures: Path | None = None  # the BEV pictures as PNG files in this folder
    rrd: Path | None = None  # a Rerun recording
    junit: Path | None = None
    budget: Path | None = None
    model_explorer: Path | None = None


def bisect(
    backends: Annotated[Optional[str], backends_option(
        "REF,CAND[,CAND…]: the first is the reference, which may come back as a candidate (a noise check: ort,ort); "
        "no candidate twice.")] = "torch,ort",
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    params: AutowareParams = None,
    model_factory: ModelFactory = None,
    points: Points = None,
    load_dim: LoadDim = None,
    use_dim: UseDim = None,
    torch_model: TorchModel = None,
    dynamic: Dynamic = None,
    onnx_model: OnnxModel = None,
    inputs: Inputs = None,
    generate: Annotated[Optional[int], option(
        "--generate", min=1, metavar="N", help="A decoder LLM (--onnx file; --torch causal LM against ort@DIR's file): "
        "decode N greedy tokens with the reference and the candidate, say the first that differs and the "
        "accuracy_level that cures it, and bisect that step's forward.")] = None,
    level: Annotated[Optional[str], level_option("stage for CenterPoint, block otherwise")] = None,
    refine: Annotated[bool, typer.Option(help="Descend into the diverging module's children down to a leaf.")] = True,
    atol: Atol = None,
    rtol: Rtol = None,
    tolerance_mode: ToleranceMode = None,
    deterministic: Deterministic = True,
    cudnn_algo: CudnnAlgo = None,
    noise_floor: Annotated[bool,
                           typer.Option(help="Run the reference twice and widen tolerances by its noise.")] = True,
    local: Annotated[bool, typer.Option(help="Run each segment alone on the reference's inputs (local error).")] = True,
    calib: Annotated[Optional[list[Path]], calib_files_option(
        "INT8 / FP8 calibration inputs (ort-*-int8, ort-*-fp8, torch-*-fp8)", "none: the run's own input")] = None,
    int8: Int8Dir = None,
    metric: Annotated[Optional[str], option(
        "--metric", metavar="NAME|FILE.py:FUNC", help="The application's decision, eval's metrics: a built-in "
        "(top1, argmax, ...) or FUNC(outputs, reference, label) seeing every output by name (and the inputs, by "
        "name, where it names a parameter `inputs`); a value that changes "
        "is a decision flipped (never within precision), the layer that moves it confirmed by intervention. "
        "Without it, Sigmoid / Softmax outputs are read at 0.5 / argmax.")] = None,
    keep_fp32: Annotated[Optional[str],
                         typer.Option(help="Comma-separated ONNX node names kept in FP32 by FP16 conversion.")] = None,
    exclude_int8: Annotated[Optional[str], exclude_int8_option(
        "Comma-separated ONNX node names left out of INT8 or FP8.")] = None,
    exporter: Exporter = "auto",
    cache: NoCache = False,
    seed: TorchSeed = 0,
    memory_budget: Annotated[Optional[int], typer.Option(
        "--memory-budget", min=0, metavar="MB", help="Reference tensors kept in memory, in MiB; past it they go to "
        "disk (0 = every reference tensor on disk). Default: a quarter of the memory available at the start.")] = None,
    device_budget: Annotated[Optional[int], typer.Option(
        "--device-budget", min=0, metavar="MB", help="A CUDA reference's probe tensors kept on the GPU, in MiB, where "
        "a candidate on the same GPU is compared with them (past it they go to host memory). 0 = every reference "
        "tensor on the host (and an ONNX Runtime pair in lockstep). Default: 40% of the GPU memory free at the "
        "start.")] = None,
    lockstep_mode: Annotated[str,
                             typer.Option("--lockstep-mode", help="ONNX Runtime on both sides: 'segments' (a session "
                                               "per segment, least memory), 'grouped' (consecutive segments in one "
                                               "session while their tensors fit 1 GiB) or 'auto' (grouped from 200 "
                                               "segments). On one CUDA device the pair runs whole stages, compared "
                                               "on the GPU, unless --device-budget 0.")] = "auto",
    json_out: Json = None,
    csv: Csv = None,
    parquet: Parquet = None,
    html: Html = None,
    pictures: Pictures = None,
    rrd: Rrd = None,
    junit: Junit = None,
    budget: BudgetFile = None,
    model_explorer: Annotated[Optional[Path], typer.Option(
        "--model-explorer", metavar="DIR", help="Write Google Model Explorer files to DIR: each stage's reference and "
        "candidate ONNX graphs, per-node error as custom node data (max/|ref|max, local error, status) and the node "
        "mapping for its split-pane sync (DIR/README.md says how to open them).")] = None,
    bundle: Annotated[Optional[Path],
                      option("--bundle", help="Write a bug-report bundle (failing subgraph, "
                                              "inputs, repro.py) to DIR; where nothing diverged, none is written "
                                              "and the run's exit code stands.")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run the backends side by side, find the first divergent probe and the root cause.
    """
    from cp_debug.bisect.phases import Phases

    phases = Phases()  # where the command's time goes, from its first line (the report's settings.phases)
    with ThirdParty(verbose=verbose) as third_party:
        with phases.timed("check"):  # the request checked before anything loads (no heavy library imported)
            no_cache(cache)
            model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed, int8=int8,
                                 factory=model_factory)
            from cp_debug.api import bisect_request as groups

            pairs = groups.backends_group(backends)
            if pairs[0][1].kit:  # two targets' results of one file, compared with each other (kit/targets.py)
                from cp_debug.cli.common.output import print_targets

                raise typer.Exit(print_targets(pairs, json_out, third_party))
            subject = groups.model_group(model, torch_model=torch_model, onnx_model=onnx_model,
                                         recipe=recipe_name(recipe, config), recipe_given=bool(recipe),
                                         exporter=exporter, seed=seed, dynamic=dynamic_axes(dynamic, torch_model),
                                         params=params or (), generate=generate)
            subject = groups.samples_group(subject, inputs, points, load_dim, use_dim)
            if subject.model is not None:
                from cp_debug.cli.common.preflight import refuse_options

                refuse_options(subject.recipe, "bisect", {"--int8": subject.model.int8})
            opts = groups.options_group(level=level, refine=refine, atol=atol, rtol=rtol, tolerance_mode=tolerance_mode,
                                        deterministic=deterministic, cudnn_algo=cudnn_algo, noise_floor=noise_floor,
                                        local=local, keep_fp32=keep_fp32, exclude_int8=exclude_int8, seed=seed,
                                        memory_budget=memory_budget, device_budget=device_budget,
                                        lockstep_mode=lockstep_mode, metric=metric)
            request = groups.bisect_request(pairs, subject, opts, calib)
            outputs = BisectOutputs(json_out=json_out, csv=csv, parquet=parquet, html=html, bundle=bundle,
                                    quiet=quiet or json_out == "-", pictures=pictures, rrd=rrd, junit=junit,
                                    budget=budget, model_explorer=model_explorer)
            budget_limits = _preflight(request, outputs)
        code = run_bisect(request, outputs, third_party, budget_limits, phases)
    raise typer.Exit(code)


def _preflight(request: BisectRequest, outputs: BisectOutputs):
    """What the command line checks of the request beyond its groups (bisect_request.py) — the files it names, the
    writers its outputs need, the backends this machine has — said before the model is loaded. Returns the --budget
    file as read (`eval.gates.Budget`; None without one)."""
    from cp_debug.cli.common.preflight import check_inputs, check_outputs, check_preset, check_report_writers
    from cp_debug.errors import BadInputError

    subject_request = request.subject
    int8 = subject_request.model.int8 if subject_request.model is not None else None
    check_preset(subject_request.model, subject_request.recipe)
    check_inputs(points=subject_request.points, inputs=subject_request.inputs, int8=int8)
    from cp_debug.bisect.subjects.calib_paths import calib_files

    calib_files(request.calib)  # each file there, a folder with .npz in it: said before the model loads
    check_outputs(outputs.json_out, outputs.csv, outputs.parquet, outputs.html, outputs.rrd, outputs.junit)
    check_report_writers(parquet=outputs.parquet, html=outputs.html or outputs.pictures, rrd=outputs.rrd,
                         pictures=outputs.pictures)
    if outputs.model_explorer is not None and outputs.model_explorer.exists() and not outputs.model_explorer.is_dir():
        raise BadInputError(f"--model-explorer {outputs.model_explorer} is a file; give a folder")
    from cp_debug.backends.factory import check_available

    for _, spec in request.pairs:  # a backend this machine lacks (ort-cuda without onnxruntime-gpu, ...): said before
        check_available(spec)  # the model loads (seconds here, minutes for a large one), as the engine would after it
    from cp_debug.cli.common.output import read_budget_for

    return read_budget_for(outputs.budget, "bisect")


def run_bisect(request: BisectRequest, outputs: BisectOutputs, third_party: ThirdParty, budget=None,
               phases=None) -> int:
    """Load, bisect, write (the request checked by `_preflight`): the exit code, the run's outcome's
    (compare/noise.py: 0 within precision, 4 degraded, 1 diverged), or the budget's when `budget` (the --budget
    file `_preflight` read) is given."""
    from cp_debug.cli.common.output import StepProgress

    pairs, subject_request, opts = list(request.pairs), request.subject, request.options

    progress = StepProgress(quiet=outputs.quiet, stream=third_party.terminal)
    from cp_debug.bisect.phases import Phases

    phases = phases or Phases()  # where the command's time goes (the report's settings.phases)
    with phases.timed("libraries"):  # torch's import on CUDA (the check imports none), the warm-ups started
        _warm_up(pairs, opts)
    notes = _lint_first(pairs, subject_request, progress)
    from cp_debug.api.bisect_run import start_engine

    engine = start_engine(request, progress, phases)
    from cp_debug.backends.ort import ort_kept

    try:
        with ort_kept.wanted():  # in a server: the sessions kept for the next bisect (backends/ort/ort_kept.py)
            report = engine.run()
        report.warnings[:0] = notes
        if subject_request.model is not None:
            report.model = subject_request.model
        code, checks = int(report.outcome.exit_code), ()
        if budget is not None:
            from cp_debug.cli.common.output import budget_verdict
            from cp_debug.eval.gates import bisect_figures, budget_doc

            checks, code = budget_verdict(budget, bisect_figures(report, budget.heads), third_party.terminal)
            report.budget = budget_doc(budget, checks)
        _write_outputs(engine, report, outputs, progress, third_party, checks)
    finally:
        engine.close()
    if report.refusal is not None:  # the report is written: the run ends with the library's line (exit 3)
        raise report.refusal
    return int(code)


def _warm_up(pairs, opts) -> None:
    """What the backends' first work needs, started while the model loads: on CUDA, torch imported and the
    comparisons' first kernels, ONNX Runtime's CUDA provider, cuDNN and cuBLAS (backends/ort/ort_warm.py); numba's
    kernels where a backend runs on the CPU. A pair all on CUDA compares on the host only the graph as deployed and
    its outputs, small arrays that numpy compares (`kernels.worth`): numba's start beside the main thread cost it
    0.2 s of an H200 awml-base bisect's 3.5 (its GIL-bound imports; issue 118); a large host comparison loads
    the kernels when it comes."""
    if any(spec.device == "cuda" for _, spec in pairs):
        from cp_debug.compare.device_warm import warm_up_in_background

        warm_up_in_background()
        from cp_debug.backends.ort.ort_warm import warm_up_in_background as warm_up_ort
        from cp_debug.determinism import Determinism

        warm_up_ort([spec for _, spec in pairs], Determinism(enabled=opts.deterministic, conv_algo=opts.cudnn_algo))
    if all(spec.device == "cuda" for _, spec in pairs):
        return
    from cp_debug.compare import kernels

    kernels.warm_up_in_background()


def _write_bundle(engine, caught, bundle, progress):
    """The bundle, and one line where it does not reproduce; a CpDebugError is returned, to be the exit once the
    report is written. A run where nothing diverged writes no bundle and says so in one line: the run's verdict and
    exit code stand."""
    from cp_debug.bugreport.from_run import bundle_from_run, diverged
    from cp_debug.errors import CpDebugError

    if not diverged(caught()):
        progress.console.print("nothing diverged: no bundle written", highlight=False, soft_wrap=True)
        return None
    try:
        with progress.step(f"writing bug-report bundle {bundle}"):
            written = bundle_from_run(engine, caught(), bundle)
    except CpDebugError as err:
        return err
    if not written.reproduces:
        progress.warn(f"the bundle in {bundle} does not reproduce the divergence: {written.why}")
    return None


def _write_outputs(engine, report, outputs: BisectOutputs, progress, third_party, checks=()) -> None:
    """The bundle first (it runs ONNX Runtime again), then the files, then the table or JSON on stdout: each
    written with the third-party warnings caught so far."""
    json_out, csv, parquet, html, bundle = outputs.json_out, outputs.csv, outputs.parquet, outputs.html, outputs.bundle
    from cp_debug.cli.common.output import stdout_console

    from cp_debug.files import json_text, write_json

    def caught():
        report.third_party_warnings = [w.to_json() for w in third_party.warnings()]
        report.warnings.extend(third_party.own(beside=report.warnings))  # cp_debug's, not theirs
        return report

    failed = _write_bundle(engine, caught, bundle, progress) if bundle else None
    if csv:
        from cp_debug.report.frames import write_csv

        write_csv(caught(), csv)
    if parquet:
        from cp_debug.report.frames import write_parquet

        write_parquet(caught(), parquet)
    pictures = {}  # the bird's-eye pictures: a subject with a BEV scene only (the CenterPoint recipe)
    if (html or outputs.pictures) and report.scene is not None:
        from cp_debug.report.bev_plot import bisect_pictures, write_pictures

        with progress.step("drawing the bird's-eye pictures"):
            pictures = bisect_pictures(report)
        if outputs.pictures:
            write_pictures([p for c in pictures.values() for p in c.pictures], outputs.pictures)
    if html:
        from cp_debug.report.html import write_html

        write_html(caught(), html, pictures)
    if outputs.rrd:
        from cp_debug.report.rerun_export import bisect_recording

        with progress.step(f"writing the Rerun recording {outputs.rrd}"):
            bisect_recording(report, outputs.rrd)
    if outputs.model_explorer is not None:
        from cp_debug.report.model_explorer import stage_graphs, write_model_explorer

        with progress.step(f"writing Model Explorer files to {outputs.model_explorer}"):
            write_model_explorer(caught(), stage_graphs(engine, report), outputs.model_explorer)
    if outputs.junit is not None:
        from cp_debug.report.junit import bisect_suite, write_junit

        write_junit(outputs.junit, [bisect_suite(caught(), [c.junit_case("cpdebug.budget") for c in checks])])
    def doc():  # the report with what it ran on (`runs_on`: the built-in demo where no model was named)
        from cp_debug.cli.common.output import with_runs_on
        from cp_debug.files import jsonable

        return {**jsonable(caught()), **with_runs_on()}

    if json_out == "-":
        print(json_text(doc()))
    else:
        if json_out:
            write_json(Path(json_out), doc())
        from cp_debug.report.table import TERMINAL_ROWS, render_table

        render_table(caught(), stdout_console(), max_rows=TERMINAL_ROWS, verbose=third_party.verbose)
    if failed is not None:
        raise failed


def _lint_first(pairs: list[tuple[str, BackendSpec]], request: SubjectRequest, progress) -> list[str]:
    """`cpdebug lint`'s checks over the model, --params and the SPEC@DIR folders, before anything runs: a mismatch
    between the model and a deployed pair stops the run (one line); the others are warnings of the report."""
    from cp_debug.errors import BadInputError
    from cp_debug.lint.run import lint_before_run, params_of_folder
    from cp_debug.recipes.catalog import recipe

    if request.model is None:
        if request.params:
            raise BadInputError("--params describe a CenterPoint deployment: drop --torch/--onnx or --params")
        return []
    dirs = [s.onnx_dir for _, s in pairs if s.onnx_dir is not None]
    if not request.params and not any(params_of_folder(d) for d in dirs):
        return []
    with progress.step("checking the parameter files against the model"):
        notes = lint_before_run(request.model, request.params, dirs, recipe(request.recipe).plugin("lint"))
    for n in notes:
        progress.note(n)
    return notes
