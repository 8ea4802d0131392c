"""`sweep` and `eval` of any one-graph model (`--torch FILE.py:FUNC` / `--onnx FILE.onnx` with `--inputs` or `--data`):
the model loaded once, the samples checked against it once (one line per sample that does not fit, exit 2), the
backends parsed; then the sweep (`sweep/samples.py`) or the eval (`eval/samples.py`) and their outputs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.export.dynamic import DynamicAxes


@dataclass(frozen=True)
class SampleRun:
    """The options every sample run takes: the model, its samples, the backends and how they are judged."""

    torch: str | None
    onnx: Path | None
    inputs: Path | None
    data: str | None
    exporter: str
    seed: int
    backends: str | None
    tolerance_mode: str | None
    atol: float | None
    rtol: float | None
    quiet: bool
    junit: Path | None = None
    deterministic: bool = True
    calib: Path | None = None  # a calibrated candidate's --calib (samples/calibration.py)
    dynamic: "DynamicAxes | None" = None  # --dynamic: a --torch model's dynamic axes (export/dynamic.py)


def refuse(others: dict) -> None:
    """The options of a built-in recipe given with --torch / --onnx: one line naming them (exit 2)."""
    given = [f"--{k.replace('_', '-')}" for k, v in others.items() if v]
    if given:
        raise BadInputError(f"{', '.join(given)}: not with --torch / --onnx (a model's samples: --inputs or --data)")


def load(run: SampleRun, steps, stream, samples: bool = True, ranged: "DynamicAxes | None" = None):
    """(model, samples, (label, spec) pairs, tolerance mode): the model loaded and exported once, every sample checked
    against its graph once; `samples=False`: the caller makes its own (samples None); `ranged`: the axes a declared
    range moves, a `--torch` model exported dynamic on them."""
    from cp_debug.backends.spec import REF_CANDIDATES, parse_backends
    from cp_debug.bisect.subjects.feeds import npz_shapes
    from cp_debug.compare.noise import check_mode
    from cp_debug.export.dynamic import said_of
    from cp_debug.recipes.catalog import of_any_model
    from cp_debug.samples.sets import check_fit, sample_set

    mode = check_mode(run.tolerance_mode, run.atol, run.rtol)
    default = "torch,ort-cpu-fp16" if run.torch else "ort-cpu,ort-cpu-fp16"
    pairs = tuple(parse_backends(run.backends or default, rule=REF_CANDIDATES))
    if samples and run.inputs is None and run.data is None:
        raise BadInputError("give the samples: --inputs FILE.npz|DIR (one sample per .npz) or --data FILE.py:FUNC")
    with steps.step("loading the model"):
        model = of_any_model().load_module(run.torch, run.onnx, exporter=run.exporter, seed=run.seed, need_feed=False,
                                           dynamic=run.dynamic, shapes=npz_shapes(run.inputs) if run.torch else (),
                                           ranged=ranged)
    for line in said_of(model.source.get("dynamic")):
        steps.note(line)
    if run.onnx is not None:
        from cp_debug.bisect.subjects.deployed import refuse_unloadable_given

        refuse_unloadable_given(run.onnx, [spec for _, spec in pairs])  # the file as ONNX Runtime takes it (exit 3)
    with steps.step("checking the deployed files") if any(s.onnx_dir for _, s in pairs) else contextlib.nullcontext():
        pairs = tuple((label, model.deployed_files(spec).spec or spec) if spec.onnx_dir is not None else (label, spec)
                      for label, spec in pairs)
    for _, spec in pairs:
        for line in model.deployed_files(spec).warned if spec.onnx_dir is not None else ():
            steps.warn(line)
    if not samples:
        return model, None, pairs, mode
    given = sample_set(run.inputs, run.data, model.graph)
    check_fit(given, stream)
    return model, given, pairs, mode


def sweep_samples(run: SampleRun, out: Path, *, level: str | None, bisect_top: int, shard_size: int, resume: bool,
                  others: dict, third_party, html: bool | Path = True) -> int:
    """`cpdebug sweep --torch | --onnx`: sweep.json, frames.parquet and report.html (`html`: True, a file, or False
    for none) written whole, the table, --junit; the worst sample's exit code (a shape range searched instead of
    samples: `shape_range.sweep_range`)."""
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress
    from cp_debug.cli.common.what_runs import runs_on
    from cp_debug.files import write_json
    from cp_debug.sweep.samples import SampleSweepOptions, run_sample_sweep, sweep_doc, write_sample_files
    from cp_debug.sweep.shards import locked

    refuse(others)
    check_sweep_outputs(run.junit, html, out)
    steps = StepProgress(run.quiet, stream=third_party.terminal)
    model, samples, pairs, mode = load(run, steps, third_party.terminal)
    opts = SampleSweepOptions(pairs, Path(out), shard_size=shard_size, resume=resume, bisect_top=bisect_top,
                              level=level, tolerance_mode=mode, atol=run.atol, rtol=run.rtol, seed=run.seed,
                              deterministic=run.deterministic, calib=run.calib, runs_on=runs_on())
    with locked(opts.out):
        with progress_bar(f"sweeping {len(samples)} samples", len(samples), run.quiet, third_party.terminal) as bar:
            result = run_sample_sweep(model, samples, opts, step=steps.step, progress=bar)
        from cp_debug.cli.common.output import with_runs_on

        doc = {**sweep_doc(result, opts, model), **with_runs_on()}
        write_json(opts.out / "sweep.json", doc)
        write_sample_files(result, doc, opts.out, html)
    for line in samples.said:
        steps.note(line)
    return finish_sweep(doc, run.junit)


def check_sweep_outputs(junit: Path | None, html: bool | Path, out: Path) -> None:
    """A sample sweep's outputs checked before it runs: --junit's and --html's files writable, pyarrow there for
    frames.parquet (one line each, exit 2 / 3)."""
    from cp_debug.cli.common.preflight import check_library, check_outputs

    check_outputs(junit)
    if isinstance(html, Path) and Path(html).resolve().parent != Path(out).resolve():  # OUT is made by the sweep
        check_outputs(html)
    check_library("pyarrow", "cpdebug sweep writes frames.parquet, which needs pyarrow: "
                             "pip install 'cp-debug[parquet]'")


def finish_sweep(doc: dict, junit: Path | None) -> int:
    """A sample sweep's sweep.json told: the table (and what it adds: shapes, a range search), the JUnit suite
    where asked; the worst sample's exit code."""
    from cp_debug.cli.common.output import stdout_console
    from cp_debug.compare.noise import Outcome
    from cp_debug.sweep.summary import print_summary

    print_summary(doc, stdout_console())
    if junit is not None:
        from cp_debug.report.junit import write_junit
        from cp_debug.sweep.summary import junit_suite

        write_junit(junit, [junit_suite(doc)])
    return int(Outcome(doc["outcome"]).exit_code)


def eval_samples(run: SampleRun, metric_text: str, *, bootstrap: int, json_out: str | None, budget: Path | None,
                 others: dict, third_party) -> int:
    """`cpdebug eval --torch | --onnx --metric`: the metric per backend with its interval, the changed samples; the
    exit code the budget's where one is given, else the worst candidate's outcome."""
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, finish, read_budget_for
    from cp_debug.cli.common.preflight import check_outputs
    from cp_debug.eval.samples import run_samples_eval
    from cp_debug.samples.tasks import task_metric

    refuse(others)
    check_outputs(json_out)
    limits = read_budget_for(budget, "eval --metric")
    steps = StepProgress(run.quiet, stream=third_party.terminal)
    metric = task_metric(metric_text)
    model, samples, pairs, mode = load(run, steps, third_party.terminal)
    with progress_bar(f"evaluating {len(samples)} samples", len(samples), run.quiet, third_party.terminal) as bar:
        report = run_samples_eval(model, samples, pairs, metric, resamples=bootstrap, seed=run.seed, mode=mode,
                                  atol=run.atol, rtol=run.rtol, progress=bar, calib=run.calib)
    doc = {**report.to_json(), "model": model.source}
    code = int(report.outcome.exit_code)
    if limits is not None:
        from cp_debug.cli.common.output import budget_verdict
        from cp_debug.eval.gates import budget_doc, samples_figures

        checks, code = budget_verdict(limits, samples_figures(report), third_party.terminal)
        doc["budget"] = budget_doc(limits, checks)
    finish(doc, json_out, third_party, lambda console: print_eval(report, console))
    return int(code)


def print_eval(report, console) -> None:
    """The metric per backend with its interval, each candidate's drop and the samples that changed."""
    from rich.table import Table

    t = Table(title=f"eval: {report.metric} over {report.samples} samples ({report.source})")
    for h in ("backend", report.metric, "drop vs " + report.reference, "outcome", "samples changed"):
        t.add_column(h)
    t.add_row(report.reference, report.reference_metric.text(), "", "reference", "")
    for c in report.candidates:
        names = ", ".join(s for s, _, _ in c.changed[:8]) + (" …" if len(c.changed) > 8 else "")
        t.add_row(c.label, c.metric.text(), c.drop.text(), c.outcome.words, f"{len(c.changed)}: {names}" if names
                  else "0")
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    for s, r in report.failed:
        console.print(f"failed: {s}: {r}", highlight=False)
