"""`cpdebug bisect`: where do the candidates part from the reference, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._quiet import ThirdParty, Verbose

Backends = Annotated[str, typer.Option("--backends", "-b", help="REF,CAND[,CAND…]: the first is the reference. "
                                       "Spec: framework[-device][-precision], e.g. torch, torch-cuda-tf32, ort-cpu-int8, trt-fp16.")]

LoadDim = Annotated[Optional[int], typer.Option("--load-dim", min=3, help="float32 columns per point in a .bin "
                                                "(mmdet3d load_dim; default: the preset's, 5 as nuScenes/T4; KITTI: 4).")]
UseDim = Annotated[Optional[str], typer.Option("--use-dim", help="Columns read as x,y,z[,intensity[,time]]: a count "
                                               "(4 = the first 4) or indices (0,1,2,4); mmdet3d use_dim.")]


def bisect(
    backends: Backends = "torch,ort",
    recipe: Annotated[Optional[str], typer.Option(help="Built-in model recipe (default when no model is given): centerpoint.")] = None,
    preset: Annotated[str, typer.Option(help="CenterPoint preset: demo, tiny, awml-base, awml-j6gen2, awml-760.")] = "demo",
    checkpoint: Annotated[Optional[Path], typer.Option(help="CenterPoint checkpoint (mmengine .pth); if omitted, the shipped trained weights (demo) or seeded random weights (other presets).")] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Seeded random weights instead of the shipped trained demo weights.")] = False,
    points: Annotated[Optional[Path], typer.Option(help="Point cloud (.bin/.npy/.npz/.pcd) for CenterPoint; a synthetic scan if omitted.")] = None,
    load_dim: LoadDim = None,
    use_dim: UseDim = None,
    torch_model: Annotated[Optional[str], typer.Option("--torch", help="FILE.py:FUNC returning (module, example_inputs).")] = None,
    onnx_model: Annotated[Optional[Path], typer.Option("--onnx", help="An ONNX model (ONNX backends only).")] = None,
    inputs: Annotated[Optional[Path], typer.Option(help="Inputs to run (.npz; keys = input names or input0, input1, …).")] = None,
    level: Annotated[Optional[str], typer.Option(help="Probe level: stage, block, layer, all (default: stage for CenterPoint, block otherwise).")] = None,
    refine: Annotated[bool, typer.Option(help="Descend into the diverging module's children down to a leaf.")] = True,
    atol: Annotated[Optional[float], typer.Option(help="Absolute tolerance (default by candidate precision).")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="Relative tolerance (default by candidate precision).")] = None,
    deterministic: Annotated[bool, typer.Option(help="TF32 off, cuDNN deterministic, fixed seeds and ORT options.")] = True,
    noise_floor: Annotated[bool, typer.Option(help="Run the reference twice and widen tolerances by its noise.")] = True,
    local: Annotated[bool, typer.Option(help="Run each segment alone on the reference's inputs (local error).")] = True,
    calib: Annotated[Optional[Path], typer.Option(help="INT8 calibration inputs (.npz, same keys as --inputs).")] = None,
    int8: Annotated[Optional[Path], typer.Option("--int8", metavar="DIR", help="CenterPoint as deployed in INT8: a PTQ dir "
                                                 "(`cpdebug quantize --out DIR`) or an AWML PTQ/QAT checkpoint. The model "
                                                 "becomes its BN-fused network (FP32: quantizers off); torch-*-int8 runs its "
                                                 "fake quantization, ort-*-int8 its Q/DQ ONNX.")] = None,
    keep_fp32: Annotated[Optional[str], typer.Option(help="Comma-separated ONNX node names kept in FP32 by FP16 conversion.")] = None,
    exclude_int8: Annotated[Optional[str], typer.Option(help="Comma-separated ONNX node names left out of INT8.")] = None,
    exporter: Annotated[str, typer.Option(help="For --torch: auto (torch.export, then TorchScript), dynamo, torchscript.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for weights, synthetic scans and generated inputs.")] = 0,
    memory_budget: Annotated[int, typer.Option("--memory-budget", min=0, metavar="MB",
                                               help="Reference tensors kept in memory, in MiB; past it they go to "
                                                    "disk (0 = every reference tensor on disk).")] = 2048,
    lockstep_mode: Annotated[str, typer.Option("--lockstep-mode", help="ONNX Runtime on both sides: 'segments' (a session "
                                               "per segment, least memory) or 'grouped' (consecutive segments in one "
                                               "session while their tensors fit 1 GiB).")] = "segments",
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the JSON report to FILE ('-' = stdout, no table).")] = None,
    csv: Annotated[Optional[Path], typer.Option(help="Write the results table as CSV.")] = None,
    parquet: Annotated[Optional[Path], typer.Option(help="Write the results table as Parquet (needs pyarrow).")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Write a self-contained HTML report with plots.")] = None,
    bundle: Annotated[Optional[Path], typer.Option(help="Write a bug-report bundle (failing subgraph, inputs, repro.py) to DIR.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run the backends side by side, find the first divergent probe and the root cause.

    Exit codes: 0 within tolerance, 1 divergence found, 2 bad input or usage, 3 backend not available here.
    """
    args = locals()
    with handle_errors(), ThirdParty(verbose=args.pop("verbose")) as third_party:
        code = _bisect(**args, third_party=third_party)
    raise typer.Exit(code)


def _bisect(backends, recipe, preset, checkpoint, random_weights, points, load_dim, use_dim, torch_model, onnx_model, inputs, level, refine, atol,
            rtol, deterministic, noise_floor, local, calib, int8, keep_fp32, exclude_int8, exporter, seed, memory_budget, lockstep_mode,
            json_out, csv, parquet, html, bundle, quiet, third_party) -> int:
    from cp_debug.backends.spec import parse_backends
    from cp_debug.cli._output import StepProgress
    from cp_debug.errors import BadInputError

    pairs = parse_backends(backends)
    if lockstep_mode not in ("segments", "grouped"):
        raise BadInputError(f"--lockstep-mode {lockstep_mode!r}: use segments or grouped")
    given = [x for x in (recipe, torch_model, onnx_model) if x]
    if len(given) > 1:
        raise BadInputError("give one model: --recipe, --torch or --onnx")
    if int8 is not None and (torch_model or onnx_model):
        raise BadInputError("--int8 is for the CenterPoint recipe: drop --torch/--onnx")
    if int8 is None and any(s.framework == "torch" and s.precision == "int8" for _, s in pairs):
        from cp_debug.backends.torch_runner import TORCH_INT8_HINT

        spec = next(s for _, s in pairs if s.framework == "torch" and s.precision == "int8")
        raise BadInputError(TORCH_INT8_HINT.format(spec=spec))
    if int8 is not None and calib is not None:
        raise BadInputError("--int8 brings its own calibration (the checkpoint's amax): drop --calib")
    progress = StepProgress(quiet=quiet or json_out == "-", stream=third_party.terminal)
    with progress.step("loading the model"):
        subject = _load_subject(recipe, preset, checkpoint, points, torch_model, onnx_model, inputs, exporter, seed,
                                load_dim, use_dim, random_weights, int8)

    from cp_debug.bisect.engine import BisectEngine, BisectOptions
    from cp_debug.bisect.loaders import load_npz_inputs, match_inputs

    calib_feeds = ()
    if calib is not None:
        st0 = subject.stages[0]
        raw = load_npz_inputs(calib)
        calib_feeds = (match_inputs(raw, st0.input_names, {}, "the model"),)
    opts = BisectOptions(level=level, refine=refine, atol=atol, rtol=rtol, deterministic=deterministic,
                         noise_floor=noise_floor, local=local, calib_feeds=calib_feeds,
                         keep_fp32=_csv_list(keep_fp32), exclude_int8=_csv_list(exclude_int8), seed=seed,
                         memory_budget_mb=memory_budget, lockstep_mode=lockstep_mode)
    engine = BisectEngine(subject, pairs[0], pairs[1:], opts, progress=progress)
    try:
        report = engine.run()
        _write_outputs(engine, report, json_out, csv, parquet, html, bundle, progress, third_party)
    finally:
        engine.close()
    return 1 if report.any_diverged else 0


def _write_outputs(engine, report, json_out, csv, parquet, html, bundle, progress, third_party) -> None:
    """The bundle first (it runs ONNX Runtime again), then the files, then the table or JSON on stdout: each
    written with the third-party warnings caught so far."""
    from cp_debug.cli._output import stdout_console

    from cp_debug.report import io as report_io

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
        print(report_io.dumps(caught().to_json()))
    else:
        if json_out:
            report_io.write_json(caught(), Path(json_out))
        from cp_debug.report.table import render_table

        render_table(caught(), stdout_console(), verbose=third_party.verbose)
    if failed is not None:
        raise failed


def _load_subject(recipe, preset, checkpoint, points, torch_model, onnx_model, inputs, exporter, seed,
                  load_dim=None, use_dim=None, random_weights=False, int8=None):
    from cp_debug.errors import BadInputError
    from cp_debug.models.centerpoint.points import parse_use_dim

    if (load_dim is not None or use_dim is not None) and points is None:
        raise BadInputError("--load-dim/--use-dim describe a --points file: give --points FILE or drop them")

    if torch_model:
        from cp_debug.bisect.loaders import torch_subject

        return torch_subject(torch_model, inputs, exporter=exporter)
    if onnx_model:
        from cp_debug.bisect.loaders import onnx_subject

        return onnx_subject(onnx_model, inputs, seed=seed)
    recipe = recipe or "centerpoint"
    if recipe != "centerpoint":
        raise BadInputError(f"unknown recipe {recipe!r}: the built-in recipe is centerpoint")
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject(preset=preset, checkpoint=checkpoint, points=points, seed=seed, load_dim=load_dim,
                               use_dim=parse_use_dim(use_dim), random_weights=random_weights, int8=int8)


def _csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())
