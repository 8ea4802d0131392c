"""`cpdebug sweep --onnx FILE | --torch FILE.py:FUNC --min-shapes … --max-shapes …`: the range read (trtexec's
spelling) before anything runs; a `--torch` model exported dynamic on the axes the range moves (`ranged_axes`: with
those `--dynamic` or a `dynamic()` declares, which must hold them); the range checked against the graph's dynamic
axes, the search (`sweep/shape_range/`) with a progress bar, sweep.json written whole with its `shape_search`, the
table; the worst judged shape's exit code."""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.export.dynamic import DynamicAxes

RANGE = "--min-shapes / --max-shapes"


def check_range_given(min_shapes: str | None, max_shapes: str | None, torch_model, onnx_model, inputs, data) -> None:
    """What goes with a range, said in one line before anything loads; the spelling read (`samples/shapes.py`)."""
    from cp_debug.samples.shapes import SPELLING, parse_profile

    if min_shapes is None or max_shapes is None:
        raise BadInputError(f"give both {RANGE} ({SPELLING})")
    if not onnx_model and not torch_model:
        raise BadInputError(f"{RANGE} go with --onnx FILE.onnx (a file with dynamic axes) or --torch FILE.py:FUNC")
    if inputs is not None or data is not None:
        raise BadInputError(f"{RANGE} make their own inputs at every shape: not with --inputs / --data")
    parse_profile(min_shapes, max_shapes)


def ranged_axes(profile, torch_model) -> "DynamicAxes | None":
    """The axes the range moves, a `--torch` model's to export dynamic (None for an ONNX file: its own are searched;
    `profile`: `samples.shapes.parse_profile`'s)."""
    from cp_debug.export.dynamic import of_range

    if not torch_model:
        return None
    return of_range({n: r.min for n, r in profile.items()}, {n: r.max for n, r in profile.items()})


def sweep_range(run, out: Path, shapes: tuple[str, str], *, level: str | None, bisect_top: int, resume: bool,
                others: dict, third_party, html: bool | Path = True) -> int:
    """The range searched for each candidate's first failing shape, sweep.json, frames.parquet and report.html
    (`html` as `samples.sweep_samples` takes it) written, the table and --junit."""
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import StepProgress, with_runs_on
    from cp_debug.cli.common.samples import check_sweep_outputs, finish_sweep, load, refuse
    from cp_debug.cli.common.what_runs import runs_on
    from cp_debug.files import write_json
    from cp_debug.samples.shapes import ShapedInputs, dim_symbols, index_bounds, parse_profile, shape_space
    from cp_debug.sweep.samples import SampleSweepOptions, sweep_doc, write_sample_files
    from cp_debug.sweep.shape_range.search import planned_runs
    from cp_debug.sweep.shape_range.session import run_range_sweep
    from cp_debug.sweep.shards import locked

    refuse(others)
    if resume:
        raise BadInputError(f"--resume: a search over {RANGE} keeps no shards to resume; run it again")
    check_sweep_outputs(run.junit, html, out)
    profile = parse_profile(*shapes)
    steps = StepProgress(run.quiet, stream=third_party.terminal)
    model, _, pairs, mode = load(run, steps, third_party.terminal, samples=False,
                                 ranged=ranged_axes(profile, run.torch))
    calibrated = [label for label, spec in pairs if spec.calibrated]
    if calibrated:
        raise BadInputError(f"{', '.join(calibrated)}: a calibrated candidate is not searched over {RANGE} yet "
                            "(its calibration wants samples: sweep them with --inputs)")
    onnx = model.subject.stages[0].onnx()
    space = shape_space(profile, model.graph, dim_symbols(onnx))
    inputs = ShapedInputs(space, model.graph.dtypes, index_bounds(onnx), run.seed)
    opts = SampleSweepOptions(pairs, Path(out), bisect_top=bisect_top, level=level, tolerance_mode=mode,
                              atol=run.atol, rtol=run.rtol, seed=run.seed, deterministic=run.deterministic,
                              runs_on=runs_on())
    axes = ", ".join(f"{a.name} {a.lo}..{a.hi}" for a in space.axes) or "one shape"
    planned = planned_runs(space.lo, space.hi) * max(1, len(pairs) - 1)
    with locked(opts.out):
        with progress_bar(f"searching {axes}", planned, run.quiet, third_party.terminal) as bar:
            made = []

            def progress(**fields) -> None:
                made.append(1)
                bar(1 if len(made) <= planned else 0, **fields)

            result = run_range_sweep(model, space, inputs, opts, f"{RANGE} {shapes[0]} .. {shapes[1]}",
                                     step=steps.step, progress=progress)
            bar(max(0, planned - len(made)))  # the search ended before the runs planned: the bar full
        from cp_debug.sweep.shape_range.report import range_verdict

        doc = sweep_doc(result.sweep, opts, model)
        doc = {**doc, "verdict": f"{range_verdict(result)}; {doc['verdict']}", "shape_search": result.to_json(),
               **with_runs_on()}
        write_json(opts.out / "sweep.json", doc)
        write_sample_files(result.sweep, doc, opts.out, html)
    return finish_sweep(doc, run.junit)
