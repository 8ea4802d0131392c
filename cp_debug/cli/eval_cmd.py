"""`cpdebug eval`: nuScenes mAP/NDS per backend, the detection-level diff against the reference, diagnoses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._quiet import ThirdParty, Verbose
from cp_debug.cli.export_cmd import Checkpoint, Preset, Seed

# Options `eval` and `bench` share.
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Seeded random weights instead of the default checkpoint.")]
Deterministic = Annotated[bool, typer.Option(help="TF32 off, cuDNN deterministic, fixed seeds and ORT options.")]
JsonOut = Annotated[Optional[str], typer.Option("--json", help="Write the JSON report to FILE ('-' = stdout, no table).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def eval_(
    backends: Annotated[Optional[str], typer.Option("--backends", "-b", help="REF[,CAND…]: backend specs, the first is the reference (default torch,ort; torch with --detections).")] = None,
    preset: Preset = "demo",
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    scenes: Annotated[Optional[Path], typer.Option(help="mmdet3d info file (or DIR with infos.pkl) of the scans to evaluate.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Held-out synthetic scenes to evaluate when --scenes is not given.")] = 50,
    detections: Annotated[Optional[Path], typer.Option(help="A deployment's detections in the nuScenes submission format (tokens = scene file stems): one more candidate.")] = None,
    calib_scenes: Annotated[int, typer.Option(min=0, help="Held-out scenes (not evaluated) that calibrate INT8 backends.")] = 4,
    match_distance: Annotated[float, typer.Option(min=0.01, help="Centre distance (m) that matches a candidate box to a reference box in the diff.")] = 2.0,
    deterministic: Deterministic = True,
    int8: Annotated[Optional[Path], typer.Option("--int8", metavar="DIR", help="A PTQ dir (`cpdebug quantize --out DIR`): "
                                                 "torch-*-int8 runs its fake-quant model, ort-*-int8 its Q/DQ files.")] = None,
    json_out: JsonOut = None,
    html: Annotated[Optional[Path], typer.Option(help="Write a self-contained HTML page with the BEV of the most different scan.")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Evaluate backends on scans with nuScenes metrics and show how a candidate's boxes differ from the reference's.

    Exit codes: 0 done, 2 bad input, 3 a backend cannot run here.
    """
    with handle_errors(), ThirdParty(verbose=verbose) as third_party:
        _eval(backends, preset, checkpoint, random_weights, seed, scenes, n, detections, calib_scenes,
              match_distance, deterministic, json_out, html, quiet or json_out == "-", int8, third_party)


def _eval(backends, preset, checkpoint, random_weights, seed, scenes, n, detections, calib_scenes, match_distance,
          deterministic, json_out, html, quiet, int8, third_party) -> None:
    from cp_debug.cli._bar import progress_bar
    from cp_debug.cli._output import StepProgress, finish
    from cp_debug.eval.session import EvalOptions, parse_backend_list, run_eval
    from cp_debug.models.centerpoint.config import get_preset
    from cp_debug.report.io import check_writable

    get_preset(preset)
    labels = parse_backend_list(backends, detections is not None)
    for out in (json_out if json_out not in (None, "-") else None, html):
        if out is not None:
            check_writable(out)
    opts = EvalOptions(backends=labels, preset=preset, checkpoint=checkpoint, random_weights=random_weights,
                       seed=seed, scenes_dir=scenes, n=n, detections_file=detections, deterministic=deterministic,
                       calib_scenes=calib_scenes, max_dist=match_distance, int8_dir=int8)
    steps = StepProgress(quiet, stream=third_party.terminal)
    report = run_eval(opts, progress=lambda text, total: progress_bar(text, total, quiet, third_party.terminal),
                      step=steps.step)
    from cp_debug.eval.report import print_report

    finish(report.to_dict(), json_out, third_party, lambda console: print_report(report, console))
    if html is not None:
        from cp_debug.eval.html import write_html

        write_html(report, html)
