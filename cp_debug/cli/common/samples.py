"""`sweep` and `eval` of any one-graph model (`--torch FILE.py:FUNC` / `--onnx FILE.onnx` with `--inputs` or `--data`):
the model loaded once, the samples checked against it once (one line per sample that does not fit, exit 2), the
backends parsed; then the sweep (`sweep/samples.py`) or the eval (`eval/samples.py`) and their outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.api.samples_request import SampleRun
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.export.dynamic import DynamicAxes

__all__ = ["SampleRun", "eval_samples", "finish_sweep", "load", "refuse", "sweep_samples"]


def refuse(others: dict) -> None:
    """The options of a built-in recipe given with --torch / --onnx: one line naming them (exit 2)."""
    given = [f"--{k.replace('_', '-')}" for k, v in others.items() if v]
    if given:
        raise BadInputError(f"{', '.join(given)}: not with --torch / --onnx (a model's samples: --inputs or --data)")


def load(run: SampleRun, steps, stream, samples: bool = True, ranged: "DynamicAxes | None" = None):
    """The model, samples, pairs and tolerance mode of `run` (`api/samples_request.load`: one loading for the command
    and the library)."""
    from cp_debug.api.samples_request import load as load_run

    model, given, pairs, mode = load_run(run, steps, stream, samples, ranged)
    return model, given, pairs, mode


def sweep_samples(run: SampleRun, out: Path, *, level: str | None, bisect_top: int, shard_size: int, resume: bool,
                  others: dict, third_party, html: bool | Path = True, metric: str | None = None) -> int:
    """`cpdebug sweep --torch | --onnx [--metric]`: sweep.json, frames.parquet and report.html (`html`: True, a file,
    or False for none) written whole, the table, --junit; the worst sample's exit code (a shape range searched
    instead of samples: `shape_range.sweep_range`)."""
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress
    from cp_debug.cli.common.what_runs import runs_on
    from cp_debug.files import write_json
    from cp_debug.sweep.samples import SampleSweepOptions, run_sample_sweep, sweep_doc, write_sample_files
    from cp_debug.sweep.shards import locked

    refuse(others)
    check_sweep_outputs(run.junit, html, out)
    from cp_debug.samples.tasks import task_metric

    task = task_metric(metric) if metric is not None else None  # a wrong name or file: exit 2 before the model
    steps = StepProgress(run.quiet, stream=third_party.terminal)
    model, samples, pairs, mode = load(run, steps, third_party.terminal)
    opts = SampleSweepOptions(pairs, Path(out), shard_size=shard_size, resume=resume, bisect_top=bisect_top,
                              level=level, tolerance_mode=mode, atol=run.atol, rtol=run.rtol, seed=run.seed,
                              deterministic=run.deterministic, calib=run.calib, runs_on=runs_on(), metric=task)
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
    from cp_debug.eval.samples import print_eval

    finish(doc, json_out, third_party, lambda console: print_eval(report, console))
    return int(code)
