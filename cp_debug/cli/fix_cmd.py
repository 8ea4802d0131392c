"""`cpdebug fix`: the smallest set to keep in FP32 / leave out of INT8 for a target to hold over a frame set,
written as a deployable, verified artifact; `--check DIR` re-verifies a written one on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (BudgetFile, Checkpoint, ConfigFile, DataRoot, Dynamic, Exporter, FixCalibN,
                                   Int8Dir, Json, Method, OnnxModel, Percentile, Quiet, RandomWeights, Recipe,
                                   SeedOrReport, TorchModel, Verbose, backends_option, calib_files_option, model_record,
                                   option, preset_option, recipe_name, search_nodes_option)
from cp_debug.cli.common.fix_graph import (FixMaxShapes, FixMetric, FixMinShapes, fix_graph_cmd, print_range,
                                           print_shapes, refuse_metric)
from cp_debug.cli.common.quiet import ThirdParty


def fix(
    out: Annotated[Optional[Path], option("--out", "-o", help="Write the fix to DIR (whole or not at all).")] = None,
    check: Annotated[Optional[Path], typer.Option(
        "--check", help="Re-verify the fix written in DIR on this machine; name what changed since.")] = None,
    backends: Annotated[Optional[str], backends_option(
        "REF,CAND: exactly one reference and one candidate, e.g. torch,ort-cpu-fp16 or torch,ort-cpu-int8 (default "
        "torch,ort-cpu-fp16); ort-cpu-fp16@DIR fixes your own deployed FP32 pair in DIR and writes it, fixed, under "
        "its own file names.", "Spec: framework[-device][-precision][@DIR]; fix searches ONNX Runtime FP16 or INT8 "
        "candidates only (ort-cpu-fp16, ort-cuda-fp16, ort-cpu-int8; the written pair then builds TensorRT engines); "
        "the reference is FP32 torch or ort.")] = None,
    device: Annotated[Optional[str], option(
        "--device", help="With --check: where to re-run the verification, cpu or cuda (default: where it was "
             "written). A fix written on the CPU machine is checked on a GPU's float16 with --device cuda.")] = None,
    from_bisect: Annotated[Optional[Path], typer.Option(
        "--from-bisect", help="Start from a `cpdebug bisect --json` report: its model, candidate and root-cause path "
             "(ranked first).")] = None,
    from_sweep: Annotated[Optional[Path], typer.Option(
        "--from-sweep", help="Start from a `cpdebug sweep --out DIR`: its model, candidate and held-out frames (judged "
             "worst first, in its rank order), the layers it blamed ranked first.")] = None,
    torch_model: TorchModel = None,
    dynamic: Dynamic = None,
    onnx_model: OnnxModel = None,
    inputs: Annotated[Optional[Path], option(
        "--inputs", metavar="PATH", help="With --torch/--onnx: one .npz (one sample) or a folder of .npz files (one "
        "sample each); keys = input names or input0, input1, … Default: the model's example inputs (--torch) or "
        "seeded random ones (--onnx), and 3 seeded random variants.")] = None,
    data: Annotated[Optional[str], option(
        "--data", metavar="FILE.py:FUNC", help="With --torch/--onnx: FUNC() yields dicts of arrays, one sample each "
        "(Polygraphy's load_data); cpdebug imports and runs FILE.py.")] = None,
    calib: Annotated[Optional[list[Path]], calib_files_option(
        "With --torch/--onnx and a calibrated candidate (INT8, FP8, NVFP4): the calibration samples",
        "default: the search's samples")] = None,
    metric: FixMetric = None,
    min_shapes: FixMinShapes = None,
    max_shapes: FixMaxShapes = None,
    exporter: Exporter = "auto",
    recipe: Recipe = None,
    preset: Annotated[Optional[str], preset_option(
        "CenterPoint preset (default demo, or the --from-bisect report's); with --recipe transfusion a TransFusion-L "
        "preset (default transfusion-demo).")] = None,
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    seed: SeedOrReport = None,
    random_weights: RandomWeights = False,
    int8: Int8Dir = None,
    tol: Annotated[Optional[float], option(
        "--max-rel-rmse", help="Largest rel. RMSE of the worst head output on the worst frame (a fixed target "
        "instead of within precision; not an element-wise tolerance).")] = None,
    max_map_drop: Annotated[Optional[float], option(
        "--max-map-drop", help="Largest mAP drop vs the reference over the frames.")] = None,
    max_lost_boxes: Annotated[Optional[int], typer.Option(
        "--max-lost-boxes", help="Largest number of reference boxes lost over the frames.")] = None,
    tolerance_mode: Annotated[Optional[str], option(
        "--tolerance-mode", show_default="model", help="'model': the fix must be within the candidate's precision on "
        "every frame (head maps within the rounding it brings, no box changed beyond it), besides any --max-rel-rmse, "
        "--max-map-drop or --max-lost-boxes; 'fixed': those criteria alone. Default: within precision when none is "
        "given, else them alone.")] = None,
    n: Annotated[Optional[int], option(
        "--n", show_default="8", help="Held-out synthetic frames the search judges on (default 8, or the --from-sweep "
        "sweep's).")] = None,
    scenes: Annotated[Optional[Path], option(
        "--scenes", help="Your scenes instead, an info file (or a folder with infos.pkl, as `cpdebug "
             "scenes` writes): the search judges the first part, the verification the last --verify-n frames "
             "(default half), which the search never sees.")] = None,
    data_root: DataRoot = None,
    first_scene: Annotated[Optional[int], typer.Option(
        "--first-scene", help="Skip this many scenes first (held-out: `eval` uses the first ones; default 0, or the "
             "--from-sweep sweep's).")] = None,
    verify_n: Annotated[Optional[int], option(
        "--verify-n", show_default="0", help="Held-out: verify on N other frames after the search's (0: on the "
        "search's). --scenes PATH: the file's last N frames (default half). --torch/--onnx: the last N samples "
        "(default half; with one sample, on the search's, and the fix says so). The search never sees them.")] = None,
    worst_frames: Annotated[int, typer.Option(
        "--worst-frames", help="Judge each step on the worst K frames first (cheap rejection; 0: off).")] = 2,
    candidates: Annotated[Optional[str], search_nodes_option(
        "The nodes the search may keep in FP32 or leave out of INT8, instead of the ranked ones: FILE:NODE (FP16) or "
        "module names (INT8), comma-separated.")] = None,
    calib_n: FixCalibN = 16,  # INT8 from scratch (no --int8): the calibration of an INT8 candidate
    method: Method = "mse",
    percentile: Percentile = 99.99,
    bootstrap: Annotated[int, option(
        "--bootstrap", help="Bootstrap resamples of the per-class AP change interval (0: none).")] = 20,
    json_out: Json = None,
    junit: Annotated[Optional[Path], option(
        "--junit", metavar="FILE", help="With --check: write JUnit XML for CI (a test case per check: verification, "
        "files, figures, toolchain; and one per budget limit with --budget).")] = None,
    budget: BudgetFile = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Find the smallest set of nodes to keep in FP32 (FP16 candidates) or to leave out of the quantizer (INT8, FP8,
    NVFP4) so that the candidate is within its precision (default) or --max-rel-rmse / --max-map-drop /
    --max-lost-boxes holds over held-out frames, and write the deployable ONNX pair, the exclusion lists, fix.json
    and a README to --out DIR. --torch / --onnx: any one-graph model, its outputs within the candidate's precision of
    the FP32 graph in ONNX Runtime on some samples, verified on the held-out rest."""
    with ThirdParty(verbose=verbose) as third_party:
        torch_model, onnx_model, inputs, backends, from_sweep = _any_model_sweep(from_sweep, torch_model, onnx_model,
                                                                                inputs, backends)
        generic = dict(torch=torch_model, onnx=onnx_model, inputs=inputs, data=data, calib=calib, dynamic=dynamic,
                       range=(min_shapes, max_shapes) if min_shapes or max_shapes else None, verify_samples=verify_n,
                       exporter=exporter, candidates=candidates)
        if torch_model or onnx_model or generic["range"] or check is None and any(map(generic.get, list(generic)[2:6])):
            given = {"--recipe": recipe, "--preset": preset, "--config": config, "--checkpoint": checkpoint, "--int8":
                     int8, "--scenes": scenes, "--n": n, "--from-bisect": from_bisect, "--from-sweep": from_sweep,
                     "--check": check, "--max-rel-rmse": tol}
            raise typer.Exit(fix_graph_cmd(generic, seed or 0, given, out=out, backends=backends, metric=metric,
                                           json_out=json_out, quiet=quiet, third_party=third_party))
        recipe = recipe_name(recipe)
        preset = _default_preset(recipe, preset, config)
        request = dict(target=(tol, max_map_drop, max_lost_boxes, tolerance_mode), seed=seed,
                       preset=preset if config is None else None, config=str(config) if config else None,
                       checkpoint=str(checkpoint) if checkpoint else None, random_weights=random_weights or None,
                       int8=str(int8) if int8 else None, **_scenes(scenes, n, data_root), first_scene=first_scene,
                       verify_scenes=verify_n, worst=worst_frames,
                       candidates=tuple(c.strip() for c in candidates.split(",") if c.strip()) if candidates else None,
                       calib_n=calib_n, method=method, percentile=percentile, bootstrap=bootstrap, recipe=recipe)
        code = _fix(request, out=out, check=check, backends=backends, from_bisect=from_bisect, json_out=json_out,
                    quiet=quiet, third_party=third_party, device=device, from_sweep=from_sweep, junit=junit,
                    budget=budget, metric=metric)
    raise typer.Exit(code)


def _any_model_sweep(from_sweep: Path | None, torch_model, onnx_model, inputs, backends) -> tuple:
    """(torch, onnx, inputs, backends, from_sweep): where --from-sweep is a sweep of any model and no model option is
    given, its model, samples and pair (`fix.run.any_model_sweep`; what the user gave wins) and no --from-sweep left;
    else the options as given (a CenterPoint sweep goes on as --from-sweep)."""
    if from_sweep is None or torch_model or onnx_model:
        return torch_model, onnx_model, inputs, backends, from_sweep
    from cp_debug.fix.run import any_model_sweep

    swept = any_model_sweep(from_sweep)
    if swept is None:
        return torch_model, onnx_model, inputs, backends, from_sweep
    return swept["torch"], swept["onnx"], inputs or swept["inputs"], backends or swept["backends"], None


def _scenes(scenes: Path | None, n: int | None, data_root: Path | None) -> dict:
    """--n N (held-out synthetic frames) or --scenes PATH (the user's info file) as the request's fields."""
    from cp_debug.errors import BadInputError

    if scenes is None:
        if data_root is not None:
            raise BadInputError("--data-root goes with --scenes PATH (an info file's lidar paths)")
        return {"scenes": n}
    if n is not None:
        raise BadInputError("--n counts held-out synthetic frames, --scenes PATH gives yours: give one of them")
    return {"scenes_path": str(scenes), "data_root": str(data_root) if data_root is not None else None}


def _default_preset(recipe: str, preset: str | None, config: Path | None) -> str | None:
    """The preset of a fix given neither --preset nor --config: the recipe's default (`Recipe.default_preset`); for
    the catalog's default recipe it stays None (ModelRecord's own default, or what a report given fills in). A
    --config is checked here: the file must exist and be a .py (it replaces the preset)."""
    from cp_debug.recipes import catalog

    if config is not None:  # the model options not given stay None: a --from-bisect/--from-sweep run fills them
        model_record(preset or "demo", config)
    if recipe != catalog.DEFAULT and preset is None and config is None:
        return catalog.recipe(recipe).default_preset
    return preset


def _fix(request: dict, *, out: Path | None, check: Path | None, backends: str | None, from_bisect: Path | None,
         json_out: str | None, quiet: bool, third_party, device: str | None = None,
         from_sweep: Path | None = None, junit: Path | None = None, budget: Path | None = None,
         metric: str | None = None) -> int:
    """`request`: FixRequest's fields as the user gave them (None: not given; a bisect report or the default fills
    them); the reference and candidate come from `backends`; `metric`: --metric, refused here."""
    from cp_debug.cli.common.output import StepProgress, finish, with_runs_on
    from cp_debug.errors import BadInputError

    refuse_metric(metric)

    if json_out and json_out != "-":
        from cp_debug.report.io import check_writable

        check_writable(json_out)
    progress = StepProgress(quiet=quiet or json_out == "-", stream=third_party.terminal)
    if check is not None:
        if out is not None:
            raise BadInputError("give --check DIR or --out DIR, not both")
        return _check(check, device, json_out, junit, budget, progress, third_party)
    if junit is not None or budget is not None:
        raise BadInputError("--junit and --budget go with --check DIR (a search is judged by its own target: "
                            "--max-rel-rmse, --max-map-drop, --max-lost-boxes)")
    if device is not None:
        raise BadInputError("--device goes with --check DIR; a search runs where its candidate says (ort-cuda-fp16)")
    if out is None:
        raise BadInputError("give --out DIR to write the fix to (or --check DIR to re-verify one)")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; give a directory")
    from cp_debug.fix.request import check_request, make_request
    from cp_debug.fix.run import request_from_bisect, request_from_sweep, run_fix
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.fix.targets import FixTarget

    ref = cand = None
    if backends:
        from cp_debug.backends.spec import REF_CAND, parse_backends

        (ref, _), (cand, _) = parse_backends(backends, rule=REF_CAND)
    from cp_debug.recipes import catalog

    common = {**request, "target": FixTarget.of(*request["target"]), "reference": ref, "candidate": cand,
              "recipe": catalog.recipe(request["recipe"])}
    if from_bisect is not None and from_sweep is not None:
        raise BadInputError("give --from-bisect REPORT or --from-sweep DIR, not both")
    if not catalog.starts_fix_from_reports(request["recipe"]) and (from_bisect is not None or from_sweep is not None):
        raise BadInputError(f"--from-bisect / --from-sweep start from a "
                            f"{' or '.join(catalog.titles(catalog.fixed_from_reports()))} run; fix --recipe "
                            f"{request['recipe']} starts from scratch (--preset, --checkpoint, --backends)")
    if from_bisect is not None:
        starts = tuple(catalog.recipe(name) for name in catalog.fixed_from_reports())
        req = request_from_bisect(from_bisect, starts, **common)
    elif from_sweep is not None:
        req = request_from_sweep(from_sweep, **common)
    else:
        req = make_request(ModelRecord(), {}, common)
    check_request(req)
    if req.needs_devkit:
        from cp_debug.cli.common.preflight import check_devkit

        check_devkit()  # the verification's mAP: said now, not after minutes of search
    outcome = run_fix(req, progress=progress)
    written = None
    if outcome.fixed is not None:
        with progress.step(f"writing {out}"):
            written = outcome.write(out, with_runs_on())  # what it ran on, in the DIR's fix.json too
    doc = {**outcome.to_json(), "out": str(written) if written else None}
    finish(doc, json_out, third_party, lambda console: render(outcome, written, console))
    return outcome.exit_code


def _check(check: Path, device: str | None, json_out: str | None, junit: Path | None, budget: Path | None, progress,
           third_party) -> int:
    """`fix --check DIR`: re-verify, render, write JSON and JUnit; the exit code (the budget's with --budget)."""
    from cp_debug.cli.common.output import budget_verdict, finish, read_budget_for
    from cp_debug.cli.common.preflight import check_outputs
    from cp_debug.errors import BadInputError
    from cp_debug.fix.check import budget_figures, check_fix, junit_suite

    if device not in (None, "cpu", "cuda"):
        raise BadInputError(f"--device must be cpu or cuda, not {device!r}")
    check_outputs(junit)
    limits = read_budget_for(budget, "fix --check")
    from cp_debug.fix.artifact import read_fix
    from cp_debug.recipes import catalog

    made_by = catalog.recipe(read_fix(check).get("recipe"))  # the recipe its fix.json names (none: the default)
    result = check_fix(check, made_by, device=device, progress=progress)
    from cp_debug.fix.module_files import GraphCheck

    if isinstance(result, GraphCheck):  # a fix of one graph (`fix --torch / --onnx`): its samples, no mAP
        if junit is not None or budget is not None:
            raise BadInputError("--junit and --budget go with CenterPoint fixes; this fix is of one graph")
        finish(result.to_json(), json_out, third_party, lambda console: render_graph_check(result, console))
        return result.exit_code
    doc, code, checks = result.to_json(), result.exit_code, ()
    if limits is not None:
        from cp_debug.eval.gates import budget_doc

        checks, code = budget_verdict(limits, budget_figures(result), third_party.terminal)
        doc["budget"] = budget_doc(limits, checks)
    finish(doc, json_out, third_party, lambda console: render_check(result, console))
    if junit is not None:
        from cp_debug.report.junit import write_junit

        write_junit(junit, [junit_suite(result, [c.junit_case("cpdebug.budget") for c in checks])])
    return code


def render(outcome, written: Path | None, console) -> None:
    """The search's steps, the set found (or why none), the verification's lanes and where the fix was written."""
    from rich.table import Table

    s, req = outcome.search, outcome.request
    target = req.target.describe()
    t = Table(title=f"fix search: {req.candidate} vs {req.reference}, {target} ({s.runs} runs, "
                    f"{s.cheap_rejections} rejected on the worst frames)", title_justify="left")
    cols = ("#", "phase", "kept", "frames", "verdict", "worst rel. RMSE", "lost", "mAP drop", "s")
    if req.target.within_precision:
        cols = cols[:5] + ("outcome",) + cols[5:]
    for col in cols:
        t.add_column(col, justify="left" if col in ("phase", "kept", "frames", "outcome") else "right")
    for i, st in enumerate(s.steps, 1):
        f, keep = st.figures.figures, st.experiment
        more = " …" if len(keep) > 2 else ""
        kept = f"{len(keep)}: " + ", ".join(keep[:2]) + more if keep else "(none)"
        verdict = "[green]pass[/green]" if st.passed else "[red]fail[/red]"
        row = [str(i), st.phase, kept, st.figures.checked, verdict, f"{f.worst:.3g}", _opt(f.lost_boxes),
               _opt(f.map_drop, "{:+.4f}"), f"{round(st.seconds, 3):.1f}"]
        if req.target.within_precision:
            row.insert(5, f.outcome.words if f.outcome is not None else "-")
        t.add_row(*row)
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    what = "node(s) kept in FP32" if outcome.kind == "fp16" else "layer(s) left out of INT8"
    if s.status == "impossible":
        f = (s.steps[1] if len(s.steps) > 1 else s.steps[0]).figures.figures
        judged = f", {f.outcome.words} ({_worst_reason(f)})" if f.outcome is not None else ""
        console.print(f"[red]No set meets {target}[/red]: even with all {len(s.candidates)} candidates kept, worst "
                      f"rel. RMSE {f.worst:.3g}, lost boxes {_opt(f.lost_boxes)}, mAP drop "
                      f"{_opt(f.map_drop, '{:+.4f}')}{judged}. Nothing was written.", highlight=False)
        return
    n = len(s.keep)
    if not n and req.target.within_precision:
        console.print(f"[green]nothing to fix: within precision[/green] (the plain candidate is within "
                      f"{outcome.kind.upper()}'s noise on {outcome.frames_judged} frame(s))", highlight=False)
    else:
        console.print(f"[green]{n} {what}[/green] (1-minimal over {outcome.frames_judged} frame(s))"
                      + (":" if n else ": the plain candidate already meets the target."), highlight=False)
    for key in s.keep:
        console.print(f"  {key}", highlight=False)
    if outcome.kind == "fp16" and outcome.kept.modules:
        console.print(f"  modules: {', '.join(outcome.kept.modules)}", highlight=False)
    if outcome.verification is not None:
        from cp_debug.report.table import print_whole

        print_whole(console, _verification_table(outcome.verification))
    if written is not None:
        console.print(f"written: {written} (README.md says how to build the engines; "
                      f"`cpdebug fix --check {written}` re-verifies it)", highlight=False, soft_wrap=True)
        if not outcome.holds:
            console.print("[red]not verified[/red]: the set meets the target on the search's frames, but the written "
                          "pair does not hold on the verification's (table above); widen --n (or --scenes) or relax "
                          "the target", highlight=False, soft_wrap=True)


def _verification_table(v):
    from rich.table import Table

    vt = Table(title=f"verification in ONNX Runtime ({v.device}, {len(v.frames)} frame(s)): "
                     + ("[green]holds[/green]" if v.holds else "[red]does not hold[/red]"), title_justify="left")
    stage = "pts_backbone_neck_head" if "pts_backbone_neck_head" in v.fixed.latency_ms else \
        next(iter(v.fixed.latency_ms), "")
    for col in ("lane", "outcome", "mAP", "NDS", "worst rel. RMSE", "lost", "added",
                "backbone ms" if stage == "pts_backbone_neck_head" else f"{stage} ms"):
        vt.add_column(col, justify="left" if col in ("lane", "outcome") else "right")
    vt.add_row("FP32 reference", "-", _opt(v.reference_map, "{:.4f}"), _opt(v.reference_nds, "{:.4f}"), "-", "-",
               "-", "-")
    for name, lane in (("plain candidate", v.plain), ("fix", v.fixed)):
        if lane is not None:
            f = lane.figures
            vt.add_row(name, _outcome_words(f), _opt(lane.map, "{:.4f}"), _opt(lane.nds, "{:.4f}"), f"{f.worst:.3g}",
                       _opt(f.lost_boxes), _opt(f.added_boxes), f"{lane.latency_ms.get(stage, float('nan')):.1f}")
    return vt


def _outcome_words(f) -> str:
    """A lane's outcome by the noise model and how many frames are not within precision."""
    if f.outcome is None:
        return "-"
    off = sum(1 for x in f.verdicts if x.outcome.severity)
    return f.outcome.words + (f" ({off} of {len(f.verdicts)} frames)" if off else "")


def _worst_reason(f) -> str:
    """The reason of the worst frame's verdict."""
    return max(f.verdicts, key=lambda x: x.outcome.severity).reason


def render_check(result, console) -> None:
    v = result.verification
    f = v.fixed.figures
    state = "[green]holds[/green]" if result.holds else "[red]does NOT hold[/red]"
    console.print(f"fix {result.path}: {v.target.describe()} {state} here, on {v.device} (recorded: "
                  f"{'holds' if result.recorded_holds else 'did not hold'}); {_outcome_words(f)}, worst rel. RMSE "
                  f"{f.worst:.3g}, " + (f"lost boxes {f.lost_boxes}, mAP drop {_opt(f.map_drop, '{:+.4f}')}"
                                        if f.lost_boxes is not None else _flips(f))
                  + f" on {len(f.frames)} frame(s)", highlight=False)
    _changes(result, console)


def render_graph_check(result, console) -> None:
    v = result.verification
    worst = max((f.worst_rel_rmse for f in v.after), default=0.0)
    bad = [f.sample for f in v.after if not f.passed]
    console.print(f"fix {result.path}: {'[green]holds[/green]' if result.holds else '[red]does NOT hold[/red]'} here, "
                  f"on {v.device} (recorded: {'holds' if result.recorded_holds else 'did not hold'}); worst rel. RMSE "
                  f"{worst:.3g} on {len(v.after)} sample(s)"
                  + (f"; beyond the budget: {', '.join(bad)}" if bad else "")
                  + (f"; the --metric changed on {', '.join(result.metric.changed_after)}"
                     if getattr(result, "metric_changed", False) else ""), highlight=False)
    print_shapes(v, console)
    print_range(result.shape_range, console)
    if result.metric is not None:
        console.print(result.metric.text(), highlight=False, markup=False)
    _changes(result, console)


def _changes(result, console) -> None:  # since the fix was written: toolchain versions, figures, files
    console.print(("[yellow]changed since written:[/yellow] " + "; ".join(c.text() for c in result.versions))
                  if result.versions else "toolchain unchanged since written", highlight=False)
    if result.figures:
        console.print("figures changed: " + "; ".join(c.text() for c in result.figures), highlight=False)
    if result.modified_files:
        console.print(f"[yellow]files modified since written:[/yellow] {', '.join(result.modified_files)}",
                      highlight=False)


def _flips(f) -> str:
    """A TransFusion lane's proposal flips (its frames judged per query: no boxes)."""
    flips, beyond = f.extra.get("flips") or [], f.extra.get("flips_beyond_band") or []
    return f"{sum(flips)} proposal flip(s), {sum(beyond)} beyond the score band"


def _opt(x, fmt: str = "{}") -> str:
    return "-" if x is None else fmt.format(x)
