"""`cpdebug quantize`: PTQ as CenterPoint teams ship it - BN fusion, calibration, PTQ checkpoint, Q/DQ ONNX."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._options import Verbose
from cp_debug.cli._quiet import ThirdParty

Preset = Annotated[str, typer.Option(help="CenterPoint preset: demo, tiny, awml-base, awml-j6gen2, awml-760.")]
Checkpoint = Annotated[Optional[Path], typer.Option(help="FP32 mmengine/AWML checkpoint (.pth); seeded random weights if omitted.")]
Seed = Annotated[int, typer.Option(help="Seed for random weights.")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Seeded random weights instead of the preset's shipped trained weights.")]
CalibScenes = Annotated[Optional[Path], typer.Option("--calib-scenes", help="Info file (mmdet3d v1.x .pkl) or DIR with infos.pkl to calibrate on.")]
CalibN = Annotated[Optional[int], typer.Option("--calib-n", help="Number of calibration scenes (synthetic: default 100; with --calib-scenes: the first N).")]
Method = Annotated[str, typer.Option(help="Activation amax: max, percentile, entropy or mse (AWML's default).")]
Percentile = Annotated[float, typer.Option(help="For --method percentile.")]
SkipLayers = Annotated[Optional[str], typer.Option("--skip-layers", help="Comma-separated layers (or prefixes) left in FP32, added to the defaults.")]
ConvT = Annotated[str, typer.Option("--convtranspose", help="ConvTranspose2d: skip (default; with pts_neck.deblocks.{0,1,2}.0 as AWML), per-channel (axis 1) or per-tensor.")]
PerTensorConvT = Annotated[bool, typer.Option("--per-tensor-convtranspose", help="AWML's variant: ConvTranspose quantized with per-tensor weights, pts_backbone.blocks.0 left FP32 (= --convtranspose per-tensor).")]
EvalScenes = Annotated[int, typer.Option("--eval-scenes", help="Held-out scenes for the SQNR table and the FP32 vs INT8 error.")]
MapScenes = Annotated[int, typer.Option("--map-scenes", help="Held-out scenes with ground truth for FP32 vs INT8 mAP (0: none).")]
Json = Annotated[Optional[str], typer.Option("--json", help="Write the summary as JSON to FILE ('-' = stdout, no table).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def quantize(
    preset: Preset = "demo",
    checkpoint: Checkpoint = None,
    seed: Seed = 0,
    random_weights: RandomWeights = False,
    calib_scenes: CalibScenes = None,
    calib_n: CalibN = None,
    method: Method = "mse",
    percentile: Percentile = 99.99,
    skip_layers: SkipLayers = None,
    convtranspose: ConvT = "skip",
    per_tensor_convtranspose: PerTensorConvT = False,
    eval_scenes: EvalScenes = 2,
    map_scenes: MapScenes = 0,
    out: Annotated[Path, typer.Option(help="Output directory: ptq.pth, the two Q/DQ ONNX files, quantization.json.")] = Path("cpdebug-out/ptq"),
    json_out: Json = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Quantize CenterPoint to INT8 (PTQ): fuse BN by data flow, calibrate per-channel weights and per-tensor
    inputs, write an AWML-layout PTQ checkpoint and Q/DQ ONNX for TensorRT's explicit quantization."""
    args = locals()
    with handle_errors(), ThirdParty(verbose=args.pop("verbose")) as third_party:
        _quantize(**args, third_party=third_party)


@contextlib.contextmanager
def progress_bar(text: str, total: int, quiet: bool, stream=None):
    """A rich progress bar with ETA on stderr (or `stream`, as `_bar.progress_bar`); yields advance(done, total)."""
    if quiet:
        yield lambda *a: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), transient=False, redirect_stderr=stream is None,
                  console=Console(file=stream) if stream is not None else Console(stderr=True)) as p:
        task = p.add_task(text, total=total)
        yield lambda done, total_=total, *rest: p.update(task, completed=done, total=total_)


def parse_common(preset: str, method: str | None, skip_layers: str | None, convtranspose: str, per_tensor: bool):
    from cp_debug.errors import BadInputError
    from cp_debug.models.centerpoint.config import get_preset
    from cp_debug.quant.calibrate import METHODS
    from cp_debug.quant.quantizers import CONVTRANSPOSE_MODES

    cfg = get_preset(preset)
    if method is not None and method not in METHODS:
        raise BadInputError(f"unknown --method {method!r}: choose one of {', '.join(METHODS)}")
    if per_tensor:
        if convtranspose not in ("skip", "per-tensor"):
            raise BadInputError("--per-tensor-convtranspose contradicts --convtranspose " + convtranspose)
        convtranspose = "per-tensor"
    if convtranspose not in CONVTRANSPOSE_MODES:
        raise BadInputError(f"unknown --convtranspose {convtranspose!r}: choose {', '.join(CONVTRANSPOSE_MODES)}")
    extra = [s.strip() for s in (skip_layers or "").split(",") if s.strip()]
    return cfg, convtranspose, extra


def calibrated(preset, checkpoint, seed, random_weights, calib_scenes, calib_n, method, percentile, extra_skip,
               convtranspose, quiet, progress):
    """Load the model and run PTQ with a progress bar; returns (LoadedModel, PtqRun, calibration description)."""
    from cp_debug.ptq.ptq import calibration_points, default_skip, quantize_centerpoint
    from cp_debug.recipes.centerpoint.model_source import load_model

    with progress.step(f"building {preset}"):
        loaded = load_model(preset, checkpoint, seed, random_weights=random_weights)
    n, points, desc = calibration_points(loaded.cfg, calib_scenes, calib_n)
    skip = tuple(default_skip(convtranspose)) + tuple(extra_skip)
    with progress_bar(f"calibrating ({method})", n, quiet,
                      progress.console.file if progress.own_stream else None) as advance:
        run = quantize_centerpoint(loaded.model, loaded.cfg, points, n, method=method, percentile=percentile,
                                   skip=skip, convtranspose=convtranspose, on_scene=advance)
    if not quiet:
        progress.console.print(f"[dim]✓ weights: {loaded.weights}; BN fused ({run.bn_pairs} pairs), {len(run.plan.layers)} layers calibrated "
                               f"on {desc} ({run.seconds:.1f} s)[/dim]", highlight=False)
    return loaded, run, desc


def _quantize(preset, checkpoint, seed, random_weights, calib_scenes, calib_n, method, percentile, skip_layers, convtranspose,
              per_tensor_convtranspose, eval_scenes, map_scenes, out, json_out, quiet, third_party) -> None:
    from cp_debug.cli._output import StepProgress, finish
    from cp_debug.errors import BadInputError

    cfg, convtranspose, extra = parse_common(preset, method, skip_layers, convtranspose, per_tensor_convtranspose)
    if eval_scenes < 1:
        raise BadInputError(f"--eval-scenes must be at least 1, got {eval_scenes}")
    if map_scenes < 0:
        raise BadInputError(f"--map-scenes must be >= 0, got {map_scenes}")
    if json_out and json_out != "-":
        from cp_debug.report.io import check_writable

        check_writable(json_out)
    quiet = quiet or json_out == "-"
    progress = StepProgress(quiet, stream=third_party.terminal)
    loaded, run, desc = calibrated(preset, checkpoint, seed, random_weights, calib_scenes, calib_n, method,
                                   percentile, extra, convtranspose, quiet, progress)
    with progress.step(f"writing the PTQ checkpoint and Q/DQ ONNX to {out}"):
        summary = _write(loaded, run, desc, convtranspose, percentile, eval_scenes, map_scenes, out)
    finish(summary, json_out, third_party, lambda console: render(summary, console))


def _write(loaded, run, desc, convtranspose, percentile, eval_scenes, map_scenes, out) -> dict:
    import json

    from cp_debug.ptq.compare import compare_int8
    from cp_debug.ptq.ptq import heldout_points, stage_inputs
    from cp_debug.quant.ptq_checkpoint import (CHECKPOINT_FILE, REPORT_FILE, save_ptq_checkpoint,
                                               write_dir_atomically)
    from cp_debug.ptq.export import export_qdq
    from cp_debug.quant.sqnr import quantization_error

    cfg = loaded.cfg
    spatial = [stage_inputs(run.fused_fp32, cfg, p)[1] for p in heldout_points(cfg, eval_scenes)]

    def sqnr_loop(model) -> int:
        from cp_debug.models.centerpoint.model import BackboneNeckHeadStage

        for s in spatial:
            BackboneNeckHeadStage(model)(s)
        return len(spatial)

    quant = {
        "method": run.method, "percentile": percentile if run.method == "percentile" else None,
        "calibration": desc, "calibration_scenes": run.scenes, "convtranspose": convtranspose,
        "layers": [{"name": p.name, "kind": p.kind, "weight_axis": p.weight_axis} for p in run.plan.layers],
        "skipped": [{"name": n, "reason": r} for n, r in run.plan.skipped],
        "bn_pairs": run.bn_pairs, "seconds": round(run.seconds, 3),
    }

    def write(tmp: Path) -> dict:
        save_ptq_checkpoint(run.model, tmp / CHECKPOINT_FILE, meta={"quantization": quant, "weights": loaded.weights})
        qdq = export_qdq(run.model, cfg, tmp)
        table = quantization_error(run.model, sqnr_loop)
        cmp = compare_int8(run.fused_fp32, run.model, qdq.backbone.path, spatial)
        maps = None
        if map_scenes:
            from cp_debug.ptq.map_eval import map_scenes as held_out_with_gt, map_table

            scenes = held_out_with_gt(cfg, run.fused_fp32, map_scenes)
            maps = map_table(cfg, run.fused_fp32, run.model, scenes, qdq.backbone.path)
        summary = {
            "preset": cfg.name, "weights": loaded.weights, **quant,
            "onnx": {name: {"file": s.path.name, "quantize_nodes": s.quantize_nodes,
                            "dequantize_nodes": s.dequantize_nodes, "quantized_convs": len(s.quantized_convs),
                            "float_convs": list(s.float_convs), "per_axis_weights": s.per_axis_weights}
                     for name, s in (("voxel_encoder", qdq.voxel_encoder), ("backbone", qdq.backbone))},
            "sqnr": table.to_json(),
            "int8_error": cmp.to_json(),
            "map": maps,
            "tensorrt": "not run (not available here); the Q/DQ form is TensorRT's explicit quantization",
        }
        (tmp / REPORT_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return summary

    summary = write_dir_atomically(out, write)
    summary["out"] = str(out)
    return summary


def render(summary: dict, console) -> None:
    from rich.table import Table

    console.print(f"PTQ of {summary['preset']} ({summary['weights']}): {len(summary['layers'])} layers INT8, "
                  f"{len(summary['skipped'])} FP32, amax {summary['method']}, calibrated on {summary['calibration']}",
                  highlight=False)
    bb = summary["onnx"]["backbone"]
    console.print(f"Q/DQ ONNX: {bb['quantize_nodes']} QuantizeLinear, {bb['per_axis_weights']} per-axis weight "
                  f"scales, {bb['quantized_convs']} INT8 convs; FP32 convs: {', '.join(bb['float_convs']) or 'none'}",
                  highlight=False, soft_wrap=True)
    rows = sorted(summary["sqnr"]["rows"], key=lambda r: r["sqnr_db"])[:10]
    t = Table(title=f"Lowest SQNR (local, {summary['sqnr']['scenes']} held-out scene(s))", title_justify="left")
    for col in ("layer", "tensor", "granularity", "amax", "SQNR dB", "clipped %", "zeroed %"):
        t.add_column(col, justify="left" if col in ("layer", "tensor", "granularity") else "right")
    for r in rows:
        t.add_row(r["layer"], r["tensor"], r["granularity"], f"{r['amax']:.4g}", f"{r['sqnr_db']:.1f}",
                  f"{100 * r['clipped']:.3f}", f"{100 * r['zeroed']:.2f}")
    console.print(t)
    e = Table(title=f"INT8 vs reference, rel. RMSE ({summary['int8_error']['scenes']} held-out scene(s))",
              title_justify="left")
    first = summary["int8_error"]["rows"][0]["per_output"]
    e.add_column("lane")
    e.add_column("vs")
    for n in first:
        e.add_column(n, justify="right")
    for r in summary["int8_error"]["rows"]:
        e.add_row(r["lane"], r["reference"], *(f"{v:.3g}" for v in r["per_output"].values()))
    console.print(e)
    maps = summary.get("map")
    if maps:
        m = Table(title=f"mAP on {maps['scenes']} held-out scene(s)", title_justify="left")
        for col in ("lane", "mAP", "NDS", "drop vs FP32"):
            m.add_column(col, justify="left" if col == "lane" else "right")
        for lane, v in maps.items():
            if isinstance(v, dict):
                m.add_row(lane, f"{v['mAP']:.4f}", f"{v['NDS']:.4f}", f"{v['drop']:+.4f}")
        console.print(m)
    console.print(f"written: {summary['out']} (ptq.pth, pts_voxel_encoder.onnx, pts_backbone_neck_head.onnx, "
                  "quantization.json); TensorRT not run here", highlight=False, soft_wrap=True)
