"""`cpdebug eval`: nuScenes mAP/NDS per backend, the detection-level diff against the reference, diagnoses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (Atol, BudgetFile, Checkpoint, ConfigFile, CudnnAlgo, DataRoot, Deterministic,
                                   Dynamic, Exporter, HeldOutCalib, Int8Dir, Json, MatchDistance, MinMatch, OnnxModel,
                                   Preset, Quiet, RandomWeights, Recipe, Rtol, SampleCalib, SampleData, SampleInputs,
                                   Seed, TorchModel, Verbose, backends_option, dynamic_axes, model_record, option,
                                   recipe_name)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord


def eval_(
    backends: Annotated[Optional[str], backends_option(
        "REF,CAND[,CAND…]: the first is the reference (default torch,ort); REF alone (default torch) with "
        "--detections; no spec twice.")] = None,
    recipe: Recipe = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    scenes: Annotated[Optional[Path],
                      option("--scenes", help="mmdet3d info file (or DIR with infos.pkl) of the scans to "
                                              "evaluate.")] = None,
    data_root: DataRoot = None,
    n: Annotated[int,
                 option("--n", min=1,
                        help="Held-out synthetic scenes to evaluate when --scenes is not given.")] = 50,
    detections: Annotated[Optional[Path],
                          typer.Option(help="A deployment's detections in the nuScenes submission format (tokens = "
                                            "scene file stems): one more candidate.")] = None,
    calib_scenes: HeldOutCalib = 4,
    calib: SampleCalib = None,
    match_distance: MatchDistance = 2.0,
    deterministic: Deterministic = True,
    cudnn_algo: CudnnAlgo = None,
    int8: Int8Dir = None,
    max_map_drop: Annotated[Optional[float], option(
        "--max-map-drop", metavar="X", help="Gate: exit 1 when a candidate's mAP is more than X below the "
                                            "reference's.")] = None,
    max_nds_drop: Annotated[Optional[float], typer.Option(
        "--max-nds-drop", metavar="Y", help="Gate: exit 1 when a candidate's NDS is more than Y below the "
                                            "reference's.")] = None,
    min_match: MinMatch = None,
    budget: BudgetFile = None,
    tolerance_mode: Annotated[str, option(
        "--tolerance-mode", help="'model': each candidate's boxes judged by its precision's noise (lost/added at the "
        "score threshold explained, moved or rescored beyond it degraded): within precision (exit 0), degraded (4) "
        "or diverged (1: NaN/Inf boxes, no box at all). 'fixed': no verdict, exit 0 when done.")] = "model",
    json_out: Json = None,
    html: Annotated[Optional[Path],
                    option("--html", help="Write a self-contained HTML page with the BEV of the "
                                          "most different scan.")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    torch_model: TorchModel = None,
    dynamic: Dynamic = None,
    onnx_model: OnnxModel = None,
    inputs: SampleInputs = None,
    data: SampleData = None,
    metric: Annotated[Optional[str], option(
        "--metric", metavar="NAME|FILE.py:FUNC", help="With --torch/--onnx: the task metric per backend, with a "
        "bootstrap interval: top1, top5 (classifier logits: agreement with the reference's top class), argmax "
        "(agreement per position: tokens [.., T, V], pixels [N, C, H, W]), cosine, snr (embeddings), accuracy "
        "(--data yielding labels), or FILE.py:FUNC(outputs, reference, label) -> float (cpdebug runs FILE.py; a "
        "parameter named `inputs` gets the sample's inputs by name). "
        "Default top1.")] = None,
    bootstrap: Annotated[int, option(
        "--bootstrap", min=0, help="With --torch/--onnx: bootstrap resamples of the metric's interval.")] = 1000,
    atol: Atol = None,
    rtol: Rtol = None,
    exporter: Exporter = "auto",
) -> None:
    """Evaluate backends on scans with nuScenes metrics and show how a candidate's boxes differ from the reference's.

    Backends default to torch,ort (torch alone with --detections). --torch / --onnx: any one-graph model's task
    metric (--metric) over its samples (--inputs or --data), per backend, the samples that change named."""
    dynamic_axes(dynamic, torch_model)  # --dynamic without --torch: one line
    if torch_model or onnx_model:
        from cp_debug.cli.common.samples import SampleRun, eval_samples

        others = dict(scenes=scenes, config=config, checkpoint=checkpoint, detections=detections, int8=int8,
                      max_map_drop=max_map_drop, max_nds_drop=max_nds_drop, min_match=min_match, html=html)
        mode = None if tolerance_mode == "model" and (atol is not None or rtol is not None) else tolerance_mode
        with ThirdParty(verbose=verbose) as third_party:
            code = eval_samples(SampleRun(torch_model, onnx_model, inputs, data, exporter, seed, backends, mode, atol,
                                          rtol, quiet or json_out == "-", deterministic=deterministic, calib=calib,
                                          dynamic=dynamic_axes(dynamic, torch_model)),
                                metric or "top1", bootstrap=bootstrap, json_out=json_out, budget=budget,
                                others=others, third_party=third_party)
        raise typer.Exit(code)
    if calib is not None:
        from cp_debug.errors import BadInputError

        raise BadInputError("--calib PATH goes with --torch / --onnx: a CenterPoint eval's INT8 backends "
                            "calibrate on --calib-n held-out synthetic frames")
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.compare.noise import check_mode
        from cp_debug.eval.gates import check_limits

        check_mode(tolerance_mode)
        check_limits(max_map_drop=max_map_drop, max_nds_drop=max_nds_drop, min_match=min_match)
        gates = dict(max_map_drop=max_map_drop, max_nds_drop=max_nds_drop, min_match=min_match)
        from cp_debug.cli.common.output import read_budget_for

        budget_limits = read_budget_for(budget, "eval")
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed, int8=int8)
        preset = model.model_name
        recipe = recipe_name(recipe, config)
        from cp_debug.cli.common.preflight import refuse_options

        refuse_options(recipe, "eval", {"--int8": int8 is not None})
        _preflight(recipe, preset, checkpoint=checkpoint, scenes=scenes, detections=detections, int8=int8,
                   json_out=json_out, html=html)
        from cp_debug.determinism import check_conv_algo
        from cp_debug.eval.session import EvalOptions
        from cp_debug.recipes import catalog

        opts = EvalOptions(backends=_backends(backends, detections is not None), preset=preset,
                           checkpoint=checkpoint, random_weights=random_weights, seed=seed, scenes_dir=scenes,
                           data_root=data_root, n=n, detections_file=detections, deterministic=deterministic,
                           cudnn_algo=check_conv_algo(cudnn_algo),
                           calib_scenes=calib_scenes, max_dist=match_distance, int8_dir=int8,
                           tolerance_mode=tolerance_mode, recipe=catalog.recipe(recipe))
        code = _eval(opts, model, gates, json_out=json_out, html=html, quiet=quiet or json_out == "-",
                     third_party=third_party, budget=budget_limits)
    raise typer.Exit(code)


def _backends(text: str | None, has_detections: bool) -> tuple:
    """(label, spec) per backend, the reference first: a reference and candidates, or the reference alone when a
    detections file is the candidate."""
    from cp_debug.backends.spec import BackendsRule, parse_backends

    if has_detections:
        return tuple(parse_backends(text or "torch", rule=BackendsRule(form="REF[,CAND…]", least=1)))
    return tuple(parse_backends(text or "torch,ort", rule=BackendsRule(hint=" or REF with a --detections file")))


def _preflight(recipe: str, preset: str, *, checkpoint, scenes, detections, int8, json_out, html) -> None:
    """What eval needs, checked before any scene is run: the devkit, the preset, the inputs, the outputs."""
    from cp_debug.cli.common.preflight import check_devkit, check_inputs, check_outputs, check_report_writers
    from cp_debug.recipes.catalog import preset_config

    check_devkit()
    preset_config(recipe, preset)
    check_inputs(checkpoint=checkpoint, scenes=scenes, detections=detections, int8=int8)
    check_outputs(json_out, html)
    check_report_writers(html=html)


def _eval(opts, model: ModelRecord, gates: dict, *, json_out: str | None, html: Path | None, quiet: bool,
          third_party: ThirdParty, budget=None) -> int:
    """Run the eval, show and write it; the exit code: `ExitCode.DIVERGED` when a gate of `gates` is broken, else
    the worst candidate's outcome (fixed mode: OK)."""
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, finish, gates_exit
    from cp_debug.errors import ExitCode
    from cp_debug.eval.gates import eval_gates
    from cp_debug.eval.report import print_report
    from cp_debug.eval.session import run_eval

    steps = StepProgress(quiet, stream=third_party.terminal)
    report = run_eval(opts, progress=lambda text, total: progress_bar(text, total, quiet, third_party.terminal),
                      step=steps.step)
    checks = eval_gates(report, **gates)
    doc = {**report.to_json(), "model_record": model.to_json(), "gates": [c.to_json() for c in checks]}
    budget_code = None
    if budget is not None:
        from cp_debug.cli.common.output import budget_verdict
        from cp_debug.eval.gates import budget_doc, eval_figures

        limits, budget_code = budget_verdict(budget, eval_figures(report), third_party.terminal)
        doc["budget"] = budget_doc(budget, limits)
    finish(doc, json_out, third_party, lambda console: print_report(report, console))
    if html is not None:
        from cp_debug.eval.html import write_html

        write_html(report, html)
    outcome = report.outcome
    own = budget_code if budget_code is not None else (outcome.exit_code if outcome is not None else ExitCode.OK)
    return gates_exit(checks, third_party.terminal) or own

