"""`cpdebug sensitivity`: which layers INT8 hurts (one at a time), and the FP32 exclusion set (--search)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (CalibScenes, Checkpoint, ConfigFile, ConvT, Csv, Json, Method, Percentile,
    Preset,
                                   Quiet, RandomWeights, Recipe, Seed, SkipLayers, Verbose, calib_n_option,
                                   model_record, option, recipe_name)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord


@dataclass(frozen=True)
class SearchRequest:
    """What to measure after calibration: the layers, the held-out scenes, the exclusion search's criterion."""

    eval_scenes: int = 4
    layers: str | None = None
    search: bool = False
    tol: float | None = None
    max_map_drop: float | None = None
    map_scenes: int = 0

    def checked(self) -> "SearchRequest":
        """The request with its defaults filled in (20 mAP scenes for --max-map-drop, tol 0.05 for a bare
        --search); a BadInputError names a wrong value."""
        from cp_debug.errors import BadInputError

        map_scenes, tol = self.map_scenes, self.tol
        if self.max_map_drop is not None:
            if self.max_map_drop < 0:
                raise BadInputError(f"--max-map-drop must be >= 0, got {self.max_map_drop}")
            map_scenes = map_scenes or 20
        if map_scenes < 0:
            raise BadInputError(f"--map-n must be >= 0, got {map_scenes}")
        if self.eval_scenes < 1:
            raise BadInputError(f"--eval-n must be at least 1, got {self.eval_scenes}")
        if self.search and tol is None and self.max_map_drop is None:
            tol = 0.05
        return replace(self, map_scenes=map_scenes, tol=tol)


def sensitivity(
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    seed: Seed = 0,
    random_weights: RandomWeights = False,
    calib_scenes: CalibScenes = None,
    calib_n: Annotated[Optional[int], calib_n_option(
        "Number of calibration frames: synthetic ones, or with --calib its first N (default: all of it).",
        shown="16")] = None,
    method: Method = "mse",
    percentile: Percentile = 99.99,
    skip_layers: SkipLayers = None,
    convtranspose: ConvT = "skip",
    eval_scenes: Annotated[int, option("--eval-n", help="Held-out frames the output error is measured on.")] = 4,
    layers: Annotated[Optional[str],
                      typer.Option("--layers",
                                   help="Comma-separated quantized layers to measure (default: all).")] = None,
    search: Annotated[bool,
                      typer.Option("--search", help="Then search a 1-minimal set of layers to leave in FP32.")] = False,
    tol: Annotated[Optional[float], option(
        "--max-rel-rmse", help="--search: largest rel. RMSE of the worst head output that passes (default 0.05 "
        "without --max-map-drop).")] = None,
    max_map_drop: Annotated[Optional[float], option(
        "--max-map-drop", help="--search: largest mAP drop vs FP32 that passes (e.g. 0.005); with --max-rel-rmse, "
        "both must hold.")] = None,
    map_scenes: Annotated[int, option(
        "--map-n", help="Held-out frames with ground truth for mAP (0: no mAP; 20 when --max-map-drop is given).")
    ] = 0,
    top: Annotated[int, typer.Option(help="Rows shown in the table.")] = 10,
    json_out: Json = None,
    csv: Csv = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a bar chart of the ranking (PNG).")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Quantize one layer at a time (the rest FP32) and rank the layers by the head outputs' rel. RMSE vs FP32
    on held-out scenes; with --search, a 1-minimal set of layers to leave in FP32 so that INT8 meets --max-rel-rmse."""
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        from cp_debug.recipes.catalog import recipe as recipe_of

        r = recipe_of(recipe_name(recipe, config))
        ptq = r.plugin("ptq", command="sensitivity")  # CenterPoint's is the only PTQ plug-in today
        settings = ptq.PtqSettings.parse(method, percentile, skip_layers, convtranspose)
        request = SearchRequest(eval_scenes=eval_scenes, layers=layers, search=search, tol=tol,
                                max_map_drop=max_map_drop, map_scenes=map_scenes).checked()
        n_calib = 16 if calib_n is None and calib_scenes is None else calib_n
        code = _sensitivity(r, model, settings, request, calib_scenes=calib_scenes, calib_n=n_calib, top=top,
                            json_out=json_out, csv=csv, plot=plot, quiet=quiet or json_out == "-",
                            third_party=third_party)
    raise typer.Exit(code)


def _sensitivity(r, model: ModelRecord, settings, request: SearchRequest, *, calib_scenes: Path | None,
                 calib_n: int | None, top: int, json_out: str | None, csv: Path | None, plot: Path | None,
                 quiet: bool, third_party: ThirdParty) -> int:
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, finish
    from cp_debug.cli.common.preflight import check_devkit, check_inputs, check_outputs, has_module
    from cp_debug.errors import BadInputError
    cfg = r.config(model.model_name)
    ptq = r.plugin("ptq")
    check_inputs(checkpoint=model.checkpoint, calib_scenes=calib_scenes)
    check_outputs(json_out, csv, plot)
    if plot is not None and not has_module("matplotlib"):
        raise BadInputError("--plot needs matplotlib: pip install matplotlib")
    if request.map_scenes:
        check_devkit()
    progress = StepProgress(quiet, stream=third_party.terminal)

    def bar(text: str, total: int):
        return progress_bar(text, total, quiet, third_party.terminal)

    cal = ptq.calibrate_model(model, settings, calib_scenes, calib_n, step=progress.step, bar=bar)
    if not quiet:
        progress.console.print(f"[dim]✓ {cal.summary()}[/dim]", highlight=False)
    run = cal.run
    with progress.step(f"preparing {request.eval_scenes} held-out scene(s)"):
        ev = ptq.held_out_evaluator(run, cfg, request.eval_scenes, request.map_scenes)
    chosen = ev.chosen_layers(request.layers)
    with bar("one layer at a time", len(chosen)) as advance:
        result = ptq.layer_sensitivity(ev, chosen, on_layer=lambda i, n, name: advance())
    found = None
    if request.search:
        ranked = [r.layer for r in result.rows]
        tol, max_map_drop = request.tol, request.max_map_drop
        crit = " ".join(x for x in (f"tol {tol:g}" if tol is not None else "",
                                    f"max mAP drop {max_map_drop:g}" if max_map_drop is not None else "") if x)
        with progress.step(f"exclusion search ({crit}, {len(ranked)} candidates)"):
            found = ptq.exclusion_search(ev, ranked, tol, max_map_drop=max_map_drop)
    out = {"preset": cfg.name, "method": run.method, "calibration_scenes": run.scenes,
           "skipped": [n for n, _ in run.plan.skipped], "sensitivity": result.to_json(),
           "search": found.to_json() if found else None, "model_record": model.to_json()}
    if csv:
        from cp_debug.files import write_text_atomic

        write_text_atomic(csv, result.to_frame().to_csv(index=False))
    if plot:
        _plot(result, plot, top=max(top, 10))
    finish(out, json_out, third_party, lambda console: render(result, found, console, top))
    return 1 if found is not None and found.status == "impossible" else 0


def render(result, found, console, top: int = 10) -> None:
    from rich.table import Table

    t = Table(title=f"INT8 sensitivity, one layer at a time ({result.scenes} held-out scene(s); rel. RMSE vs FP32)",
              title_justify="left")
    has_map = result.fp32_map is not None
    for col in ("#", "layer", "worst", "output", "heatmap", "reg") + (("mAP drop",) if has_map else ()):
        t.add_column(col, justify="left" if col in ("layer", "output") else "right")
    for i, r in enumerate(result.top(top), 1):
        extra = (f"{r.map_drop:+.4f}",) if has_map else ()
        t.add_row(str(i), r.layer, f"{r.rel_rmse:.3g}", r.worst_output, f"{r.heatmap:.3g}", f"{r.reg:.3g}", *extra)
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    worst = max(result.all_int8.values())
    line = f"all {len(result.rows)} layers INT8: worst rel. RMSE {worst:.3g}"
    if has_map:
        line += f"; FP32 mAP {result.fp32_map:.4f}, all-INT8 mAP drop {result.all_int8_map_drop:+.4f}"
    console.print(line, highlight=False)
    if found is None:
        return
    crit = ", ".join(x for x in (f"tol {found.tol:g}" if found.tol is not None else "",
                                 f"max mAP drop {found.max_map_drop:g}" if found.max_map_drop is not None else "") if x)
    s = Table(title=f"Exclusion search ({crit}, {found.runs} runs)", title_justify="left")
    for col in ("#", "phase", "left in FP32", "verdict", "worst rel. RMSE", "mAP drop"):
        s.add_column(col)
    for i, st in enumerate(found.steps, 1):
        fp32, f = st.experiment, st.figures
        kept = f"{len(fp32)}: " + ", ".join(fp32[:2]) + (" …" if len(fp32) > 2 else "") if fp32 else "(none)"
        s.add_row(str(i), st.phase, kept, "[green]pass[/green]" if st.passed else "[red]fail[/red]",
                  f"{f.rel_rmse:.3g}", "-" if f.map_drop is None else f"{f.map_drop:+.4f}")
    console.print(s)
    if found.status == "not_needed":
        console.print("[green]All-INT8 meets the tolerance: no layer needs to stay in FP32.[/green]")
    elif found.status == "impossible":
        console.print("[red]Even with every candidate layer in FP32 the criterion fails[/red]: the other quantized "
                      "layers alone break it; widen the candidates (--layers, or all) or loosen the criterion.",
                      highlight=False)
    else:
        console.print(f"[green]Leave {len(found.fp32)} layer(s) in FP32[/green] (1-minimal: quantizing any one of them "
                      "again fails):", highlight=False)
        for n in found.fp32:
            console.print(f"  {n}", highlight=False)
        console.print(f"cpdebug quantize ... {found.exclude_int8_option()}", highlight=False, soft_wrap=True)


def _plot(result, path: Path, top: int = 20) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cp_debug.files import write_bytes_atomic

    rows = result.top(top)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.2))
    ax.barh([r.layer for r in rows], [r.rel_rmse for r in rows], color="tab:red")
    ax.set_xlabel("rel. RMSE of the worst head output vs FP32 (this layer alone in INT8)")
    ax.set_title(f"INT8 sensitivity ({result.scenes} held-out scenes)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
