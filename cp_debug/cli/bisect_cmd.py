"""`cpdebug bisect`: where do the candidates part from the reference, and why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cp_debug.cli._options import (Atol, ConfigFile, Checkpoint, Csv, CudnnAlgo, Deterministic, Exporter, Html, Inputs,
                                   Int8Dir, Json, LoadDim, NoCache, OnnxModel, Parquet, Points, Preset, Quiet,
                                   RandomWeights, Rtol, Seed, ToleranceMode, TorchModel, UseDim, Verbose,
                                   backends_option, model_record, no_cache)
from cp_debug.cli._quiet import ThirdParty
from cp_debug.models.centerpoint.source import ModelRecord

if TYPE_CHECKING:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.engine import BisectOptions

@dataclass(frozen=True)
class SubjectRequest:
    """The model of a bisect as the user named it: the CenterPoint recipe (`model`), or `--torch` / `--onnx`."""

    model: ModelRecord | None  # None: --torch or --onnx
    torch_model: str | None = None
    onnx_model: Path | None = None
    inputs: Path | None = None
    exporter: str = "auto"
    seed: int = 0  # of the inputs generated for --onnx
    points: Path | None = None
    load_dim: int | None = None
    use_dim: str | None = None


@dataclass(frozen=True)
class BisectOutputs:
    json_out: str | None = None
    csv: Path | None = None
    parquet: Path | None = None
    html: Path | None = None
    bundle: Path | None = None
    quiet: bool = False


def bisect(
    backends: Annotated[Optional[str], backends_option(
        "REF,CAND[,CAND…]: the first is the reference, which may come back as a candidate (a noise check: ort,ort); "
        "no candidate twice.")] = "torch,ort",
    recipe: Annotated[Optional[str],
                      typer.Option(help="Built-in model recipe (default when no model is given): centerpoint.")] = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    points: Points = None,
    load_dim: LoadDim = None,
    use_dim: UseDim = None,
    torch_model: TorchModel = None,
    onnx_model: OnnxModel = None,
    inputs: Inputs = None,
    level: Annotated[Optional[str],
                     typer.Option(help="Probe level: stage, block, layer, all (default: stage for "
                                       "CenterPoint, block otherwise).")] = None,
    refine: Annotated[bool, typer.Option(help="Descend into the diverging module's children down to a leaf.")] = True,
    atol: Atol = None,
    rtol: Rtol = None,
    tolerance_mode: ToleranceMode = None,
    deterministic: Deterministic = True,
    cudnn_algo: CudnnAlgo = None,
    noise_floor: Annotated[bool,
                           typer.Option(help="Run the reference twice and widen tolerances by its noise.")] = True,
    local: Annotated[bool, typer.Option(help="Run each segment alone on the reference's inputs (local error).")] = True,
    calib: Annotated[Optional[Path],
                     typer.Option(help="INT8 calibration inputs (.npz, same keys as --inputs).")] = None,
    int8: Int8Dir = None,
    keep_fp32: Annotated[Optional[str],
                         typer.Option(help="Comma-separated ONNX node names kept in FP32 by FP16 conversion.")] = None,
    exclude_int8: Annotated[Optional[str],
                            typer.Option(help="Comma-separated ONNX node names left out of INT8.")] = None,
    exporter: Exporter = "auto",
    cache: NoCache = False,
    seed: Seed = 0,
    memory_budget: Annotated[Optional[int], typer.Option(
        "--memory-budget", min=0, metavar="MB", help="Reference tensors kept in memory, in MiB; past it they go to "
        "disk (0 = every reference tensor on disk). Default: a quarter of the memory available at the start.")] = None,
    lockstep_mode: Annotated[str,
                             typer.Option("--lockstep-mode", help="ONNX Runtime on both sides: 'segments' (a session "
                                               "per segment, least memory) or 'grouped' (consecutive segments in one "
                                               "session while their tensors fit 1 GiB).")] = "segments",
    json_out: Json = None,
    csv: Csv = None,
    parquet: Parquet = None,
    html: Html = None,
    bundle: Annotated[Optional[Path],
                      typer.Option(help="Write a bug-report bundle (failing subgraph, "
                                        "inputs, repro.py) to DIR.")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run the backends side by side, find the first divergent probe and the root cause.

    Exit codes: 0 within precision (fixed mode: within tolerance), 1 diverged (a local fault, NaN/Inf, a shape
    mix-up; fixed mode: any probe beyond tolerance), 4 degraded (beyond the precision's noise without a local fault),
    2 bad input or usage, 3 backend not available here.
    """
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.compare.noise import check_mode

        tolerance_mode = check_mode(tolerance_mode, atol, rtol)
        from cp_debug.determinism import check_conv_algo

        check_conv_algo(cudnn_algo)
        no_cache(cache)
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed, int8=int8)
        from cp_debug.backends.spec import NOISE_CHECK, parse_backends

        pairs = parse_backends(backends or "torch,ort", rule=NOISE_CHECK)
        subject = SubjectRequest(
            model=_recipe_model(recipe, torch_model, onnx_model, model),
            torch_model=torch_model, onnx_model=onnx_model, inputs=inputs, exporter=exporter, seed=seed, points=points,
            load_dim=load_dim, use_dim=use_dim)
        outputs = BisectOutputs(json_out=json_out, csv=csv, parquet=parquet, html=html, bundle=bundle,
                                quiet=quiet or json_out == "-")
        _preflight(pairs, subject, calib, lockstep_mode, outputs)
        from cp_debug.bisect.engine import BisectOptions

        opts = BisectOptions(level=level, refine=refine, atol=atol, rtol=rtol, deterministic=deterministic,
                             cudnn_algo=cudnn_algo, noise_floor=noise_floor, local=local,
                             keep_fp32=_csv_list(keep_fp32),
                             exclude_int8=_csv_list(exclude_int8), seed=seed, memory_budget_mb=memory_budget,
                             lockstep_mode=lockstep_mode, tolerance_mode=tolerance_mode)
        code = run_bisect(pairs, subject, opts, calib, outputs, third_party)
    raise typer.Exit(code)


def _recipe_model(recipe: str | None, torch_model: str | None, onnx_model: Path | None,
                  model: ModelRecord) -> ModelRecord | None:
    """The CenterPoint model record `model`, or None for a --torch / --onnx model (one model only)."""
    from cp_debug.errors import BadInputError

    if len([x for x in (recipe, torch_model, onnx_model) if x]) > 1:
        raise BadInputError("give one model: --recipe, --torch or --onnx")
    if torch_model or onnx_model:
        if model.int8 is not None:
            raise BadInputError("--int8 is for the CenterPoint recipe: drop --torch/--onnx")
        return None
    if (recipe or "centerpoint") != "centerpoint":
        raise BadInputError(f"unknown recipe {recipe!r}: the built-in recipe is centerpoint")
    return model


def _preflight(pairs: list[tuple[str, BackendSpec]], subject_request: SubjectRequest, calib: Path | None,
               lockstep_mode: str, outputs: BisectOutputs) -> None:
    """Everything that can be wrong with the request, said before the model is loaded."""
    from cp_debug.cli._preflight import check_inputs, check_outputs, check_report_writers
    from cp_debug.errors import BadInputError

    if lockstep_mode not in ("segments", "grouped"):
        raise BadInputError(f"--lockstep-mode {lockstep_mode!r}: use segments or grouped")
    int8 = subject_request.model.int8 if subject_request.model is not None else None
    torch_int8 = [s for _, s in pairs if s.is_torch and s.precision == "int8"]
    if int8 is None and torch_int8:
        from cp_debug.backends.torch_runner import TORCH_INT8_HINT

        raise BadInputError(TORCH_INT8_HINT.format(spec=torch_int8[0]))
    if int8 is not None and calib is not None:
        raise BadInputError("--int8 brings its own calibration (the checkpoint's amax): drop --calib")
    if (subject_request.load_dim is not None or subject_request.use_dim is not None) and subject_request.points is None:
        raise BadInputError("--load-dim/--use-dim describe a --points file: give --points FILE or drop them")
    check_inputs(points=subject_request.points, inputs=subject_request.inputs, calib=calib, int8=int8)
    check_outputs(outputs.json_out, outputs.csv, outputs.parquet, outputs.html)
    check_report_writers(parquet=outputs.parquet, html=outputs.html)


def run_bisect(pairs: list[tuple[str, BackendSpec]], subject_request: SubjectRequest, opts: BisectOptions,
               calib: Path | None, outputs: BisectOutputs, third_party: ThirdParty) -> int:
    """Load, bisect, write (the request checked by `_preflight`): the exit code, the run's outcome's
    (compare/noise.py: 0 within precision, 4 degraded, 1 diverged)."""
    from dataclasses import replace

    from cp_debug.cli._output import StepProgress

    progress = StepProgress(quiet=outputs.quiet, stream=third_party.terminal)
    with progress.step("loading the model"):
        subject = _load_subject(subject_request)

    from cp_debug.bisect.engine import BisectEngine
    from cp_debug.bisect.loaders import load_npz_inputs, match_inputs

    if calib is not None:
        feeds = match_inputs(load_npz_inputs(calib), subject.stages[0].input_names, {}, "the model")
        opts = replace(opts, calib_feeds=(feeds,))
    engine = BisectEngine(subject, pairs[0], pairs[1:], opts, progress=progress)
    try:
        report = engine.run()
        if subject_request.model is not None:
            report.model_record = subject_request.model
        _write_outputs(engine, report, outputs, progress, third_party)
    finally:
        engine.close()
    return int(report.outcome.exit_code)


def _write_outputs(engine, report, outputs: BisectOutputs, progress, third_party) -> None:
    """The bundle first (it runs ONNX Runtime again), then the files, then the table or JSON on stdout: each
    written with the third-party warnings caught so far."""
    json_out, csv, parquet, html, bundle = outputs.json_out, outputs.csv, outputs.parquet, outputs.html, outputs.bundle
    from cp_debug.cli._output import stdout_console

    from cp_debug.files import json_text, write_json

    def caught():
        report.third_party_warnings = [w.to_json() for w in third_party.warnings()]
        return report

    failed = None
    if bundle:
        from cp_debug.bugreport.from_run import bundle_from_run
        from cp_debug.errors import CpDebugError

        try:
            with progress.step(f"writing bug-report bundle {bundle}"):
                bundle_from_run(engine, caught(), bundle)
        except CpDebugError as err:  # the report is still written, then the bundle's error is the exit
            failed = err
    if csv:
        from cp_debug.report.frames import write_csv

        write_csv(caught(), csv)
    if parquet:
        from cp_debug.report.frames import write_parquet

        write_parquet(caught(), parquet)
    if html:
        from cp_debug.report.html import write_html

        write_html(caught(), html)
    if json_out == "-":
        print(json_text(caught()))
    else:
        if json_out:
            write_json(Path(json_out), caught())
        from cp_debug.report.table import render_table

        render_table(caught(), stdout_console(), verbose=third_party.verbose)
    if failed is not None:
        raise failed


def _load_subject(request: SubjectRequest):
    from cp_debug.data.point_files import parse_use_dim

    if request.torch_model:
        from cp_debug.bisect.loaders import torch_subject

        return torch_subject(request.torch_model, request.inputs, exporter=request.exporter)
    if request.onnx_model:
        from cp_debug.bisect.loaders import onnx_subject

        return onnx_subject(request.onnx_model, request.inputs, seed=request.seed)
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    m = request.model
    return centerpoint_subject(preset=m.model_name, checkpoint=m.checkpoint, points=request.points, seed=m.seed,
                               load_dim=request.load_dim, use_dim=parse_use_dim(request.use_dim),
                               random_weights=m.random_weights, int8=m.int8)


def _csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())
