"""`cpdebug quantize`: PTQ as CenterPoint teams ship it - BN fusion, calibration, PTQ checkpoint, Q/DQ ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from cp_debug.cli.common.options import (CalibScenes, Checkpoint, ConfigFile, ConvT, Json, Method, Percentile, Preset,
    Quiet,
                                   RandomWeights, Recipe, Seed, SkipLayers, Verbose, calib_n_option, model_record,
                                   option, recipe_name)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord


def quantize(
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    seed: Seed = 0,
    random_weights: RandomWeights = False,
    calib_scenes: CalibScenes = None,
    calib_n: Annotated[Optional[int], calib_n_option(
        "Number of calibration frames: synthetic ones, or with --calib its first N (default: all of it).",
        shown="100")] = None,
    method: Method = "mse",
    percentile: Percentile = 99.99,
    skip_layers: SkipLayers = None,
    convtranspose: ConvT = "skip",
    eval_scenes: Annotated[int, option(
        "--eval-n", help="Held-out frames for the SQNR table and the FP32 vs INT8 error.")] = 2,
    map_scenes: Annotated[int, option(
        "--map-n", help="Held-out frames with ground truth for FP32 vs INT8 mAP (0: none).")] = 0,
    out: Annotated[Path, option(
        "--out", help="Output directory: ptq.pth, the two Q/DQ ONNX files, quantization.json.")
    ] = Path("cpdebug-out/ptq"),
    json_out: Json = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Quantize CenterPoint to INT8 (PTQ): fuse BN by data flow, calibrate per-channel weights and per-tensor
    inputs, write an AWML-layout PTQ checkpoint and Q/DQ ONNX for TensorRT's explicit quantization."""
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        from cp_debug.recipes.catalog import recipe as recipe_of

        r = recipe_of(recipe_name(recipe, config))
        ptq = r.plugin("ptq", command="quantize")  # CenterPoint's is the only PTQ plug-in today
        settings = ptq.PtqSettings.parse(method, percentile, skip_layers, convtranspose)
        _quantize(r, model, settings, calib_scenes=calib_scenes, calib_n=calib_n, eval_scenes=eval_scenes,
                  map_scenes=map_scenes, out=out, json_out=json_out, quiet=quiet or json_out == "-",
                  third_party=third_party)


def _quantize(r, model: ModelRecord, settings, *, calib_scenes: Path | None, calib_n: int | None, eval_scenes: int,
              map_scenes: int, out: Path, json_out: str | None, quiet: bool, third_party: ThirdParty) -> None:
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, finish
    from cp_debug.cli.common.preflight import check_inputs, check_outputs
    from cp_debug.errors import BadInputError
    r.config(model.model_name)
    ptq = r.plugin("ptq")
    if eval_scenes < 1:
        raise BadInputError(f"--eval-n must be at least 1, got {eval_scenes}")
    if map_scenes < 0:
        raise BadInputError(f"--map-n must be >= 0, got {map_scenes}")
    check_inputs(checkpoint=model.checkpoint, calib_scenes=calib_scenes)
    check_outputs(json_out)
    if map_scenes:
        from cp_debug.cli.common.preflight import check_devkit

        check_devkit()
    progress = StepProgress(quiet, stream=third_party.terminal)
    cal = ptq.calibrate_model(model, settings, calib_scenes, calib_n, step=progress.step,
                          bar=lambda text, total: progress_bar(text, total, quiet, third_party.terminal))
    if not quiet:
        progress.console.print(f"[dim]✓ {cal.summary()}[/dim]", highlight=False)
    with progress.step(f"writing the PTQ checkpoint and Q/DQ ONNX to {out}"):
        summary = ptq.write_ptq_dir(cal, settings, eval_scenes, map_scenes, out)
    doc = {**summary, "model_record": model.to_json()}
    finish(doc, json_out, third_party, lambda console: render(summary, console))


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
    from cp_debug.report.table import print_whole

    print_whole(console, t)
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
