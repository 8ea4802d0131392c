"""`cpdebug fix --torch | --onnx`: a fix of any one-graph model over its samples (`fix/module.py`), its DIR written
whole, and what the terminal shows of it: the search's steps, the set, the verification per sample and, with
`--metric`, the task metric before and after on the held-out samples (and the search's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

FixMetric = Annotated[Optional[str], typer.Option(
    "--metric", metavar="NAME|FILE.py:FUNC", help="With --torch/--onnx: the task metric (eval --metric's: top1, top5, "
    "argmax, cosine, snr, accuracy, or FILE.py:FUNC) before and after on the held-out samples, the samples whose "
    "result changes named; fix --check computes it again.")]
FixMinShapes = Annotated[Optional[str], typer.Option(
    "--min-shapes", metavar="NAME:DxD[,…]", help="With --torch/--onnx: a declared shape range (trtexec's spelling of "
    "minShapes, e.g. x:1x64x16; --max-shapes too), a --torch model exported dynamic on the axes it moves: samples "
    "are made at its min, mid (each moving axis at the geometric mean) and max, two each (one searched, one held "
    "out), besides any --inputs; the set is verified at each shape, and fix --check verifies them again.")]
FixMaxShapes = Annotated[Optional[str], typer.Option(
    "--max-shapes", metavar="NAME:DxD[,…]", help="The other end of --min-shapes' range (e.g. x:1x4096x16).")]


def refuse_metric(metric: str | None) -> None:
    """--metric of a CenterPoint fix or of --check (whose metric is the one its fix.json records): one line, exit 2."""
    if metric is not None:
        from cp_debug.errors import BadInputError

        raise BadInputError("--metric goes with --torch / --onnx (fix --check DIR computes again the metric its "
                            "fix.json records)")


def fix_graph_cmd(g: dict, seed: int, others: dict, *, out: Path | None, backends: str | None,
                  metric: str | None, json_out: str | None, quiet: bool, third_party) -> int:
    """`fix --torch / --onnx`: `fix.module.fix_graph` on the samples given (or the model's own), DIR written whole;
    `others`: the CenterPoint options, refused where given."""
    from cp_debug.cli.common.output import StepProgress, finish, with_runs_on
    from cp_debug.cli.common.preflight import check_outputs
    from cp_debug.errors import BadInputError
    from cp_debug.fix.module import candidate_spec, check_libraries
    from cp_debug.fix.module_files import fix_json, write_graph_fix

    given = [o for o, v in others.items() if v is not None]
    if g.get("range") and "--check" in given:
        raise BadInputError("--min-shapes / --max-shapes: fix --check DIR verifies again at the shapes its fix.json "
                            "records")
    if given:
        raise BadInputError(f"{', '.join(given)}: not with --torch / --onnx (a fix of one graph, judged within the "
                            "candidate's precision on its samples)")
    from cp_debug.cli.common.options import dynamic_axes

    g = {**g, "dynamic": dynamic_axes(g.get("dynamic"), g["torch"])}  # --dynamic parsed: a bad one is one line
    spec = candidate_spec(backends, torch_given=bool(g["torch"]))
    if out is None:
        raise BadInputError("give --out DIR to write the fix to")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; give a directory")
    check_outputs(json_out)
    check_libraries(spec)  # a missing library is said before anything loads or runs
    task = None
    if metric is not None:
        from cp_debug.samples.tasks import task_metric

        task = task_metric(metric)
    progress = StepProgress(quiet=quiet or json_out == "-", stream=third_party.terminal)
    from cp_debug.api.fix_library import graph_fix

    result, said = graph_fix(g, seed, spec, task, progress)  # the request the library's cp_debug.fix runs too
    doc = fix_json(result)
    written = None
    if result.fixed is not None:
        with progress.step(f"writing {out}"):
            written = write_graph_fix(out, result, {**doc, **with_runs_on()})
    finish({**doc, "out": str(written) if written else None, "input_casts": said}, json_out, third_party,
           lambda console: render_graph(result, written, said, console))
    return result.exit_code


def render_graph(fix, written: Path | None, said: list[str], console) -> None:
    """A generic fix: the search's steps, the set with each node's module, the verification per sample."""
    from rich.markup import escape
    from rich.table import Table

    s, split = fix.search, fix.split
    what = "kept in FP32" if fix.kind == "fp16" else f"left out of {fix.kind.upper()}"
    console.print("".join(f"note: {line}\n" for line in said), end="", highlight=False)
    t = Table(title=f"fix search: {fix.spec} vs ort-cpu-fp32 on {len(split.search)} sample(s) ({s.runs} runs, "
                    f"{len(s.candidates)} candidates)", title_justify="left")
    for col in ("#", "phase", what, "verdict", "worst rel. RMSE", "s"):
        t.add_column(col, justify="right" if col in ("#", "worst rel. RMSE", "s") else "left")
    for st in s.steps:
        keep = st.experiment
        kept = f"{len(keep)}: " + ", ".join(keep[:2]) + (" …" if len(keep) > 2 else "") if keep else "(none)"
        worst = max((f.worst_rel_rmse for f in st.figures), default=0.0)
        metric = not st.passed and all(f.passed for f in st.figures)  # within budget, the decision not (the
        # --metric's, else a Sigmoid / Softmax output's at 0.5 / argmax)
        t.add_row(str(st.step), st.phase, kept, "[green]pass[/green]" if st.passed else "[red]fail[/red]"
                  + ((" (--metric)" if fix.metric else " (a decision flipped)") if metric else ""), f"{worst:.3g}",
                  f"{st.seconds:.1f}")
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    if s.status == "tie":
        console.print(f"[yellow]No set searched[/yellow]: {s.tie}. Nothing was written.", highlight=False)
        return
    if s.status == "impossible":
        console.print(f"[red]No set passes[/red]: even with all {len(s.candidates)} candidates {what}, a sample is "
                      "beyond the precision budget. Nothing was written; `cpdebug bisect` says where it diverges.",
                      highlight=False)
        return
    named = "".join(f"\n  {fix.node_modules.get(n) + ': ' if fix.node_modules.get(n) else ''}{n}" for n in s.keep)
    console.print(f"[green]{len(s.keep)} node(s) {what}[/green] (1-minimal over {len(split.search)} sample(s)):{named}"
                  if s.keep else f"[green]nothing to fix[/green]: the plain {fix.spec} is within {fix.kind.upper()}'s "
                  "budget on every search sample", highlight=False)
    console.print("".join(f"[yellow]note[/yellow]: {escape(line)}\n" for line in fix.notes), end="", highlight=False)
    v = fix.verification
    held = "held out" if split.held_out else "the search's own: one sample, none held out"
    vt = Table(title=f"verification of {fix.file} in ONNX Runtime ({v.device}) on {len(v.after)} sample(s), {held}: "
                     + ("[green]holds[/green]" if fix.holds else "[red]does not hold[/red]"
                        + (" at the --metric" if v.holds else "")), title_justify="left")
    held = next((m for m in fix.metric if m.part == "held_out"), None)
    scores = {x.sample: x for x in held.scores} if held is not None else {}
    cols = ("sample", "before: worst rel. RMSE", "after: worst rel. RMSE", "after")
    for col in cols + ((f"{held.name}: before", f"{held.name}: after") if held is not None else ()):
        vt.add_column(col, justify="left" if col == "sample" else "right")
    for a, b in zip(v.after, v.before or [None] * len(v.after)):
        row = [a.sample, f"{b.worst_rel_rmse:.3g}" if b else "-", f"{a.worst_rel_rmse:.3g}",
               "[green]pass[/green]" if a.passed else "[red]fail[/red]"]
        if held is not None:
            x = scores[a.sample]
            row += [_score(x.before, x.changed_before), _score(x.after, x.changed_after)]
        vt.add_row(*row)
    console.print(vt)
    print_shapes(v, console)
    print_range(fix.split.shape_range, console)
    for m in fix.metric:
        console.print(("[bold]" if m.part == "held_out" else "") + escape(m.text()), highlight=False)
    if written is not None:
        console.print(f"written: {written} (README.md says how to deploy it; `cpdebug fix --check {written}` "
                      "re-verifies it)" + ("" if fix.holds else "; [red]not verified[/red] on the held-out samples: "
                                           "give more samples to the search"), highlight=False, soft_wrap=True)


def print_shapes(v, console) -> None:
    """Where the samples come in several input shapes (dynamic axes): whether the file holds at each."""
    shapes = v.by_shape()
    if not shapes:
        return
    bad = [g.shape for g in shapes if not g.holds]
    console.print(f"per shape: {'[red]does not hold[/red] at ' + ', '.join(bad) if bad else '[green]holds[/green]'} "
                  f"(of {len(shapes)} shapes)" + "".join(f"\n  {g.text()}" for g in shapes), highlight=False)


def print_range(doc: dict | None, console) -> None:
    """Where a declared range was verified: its axes and the shapes of its min, mid and max."""
    if not doc:
        return
    axes = ", ".join(f"{a['name']} {a['min']}..{a['max']}" for a in doc["axes"]) or "one shape"
    at = ", ".join(f"{k} {v}" for k, v in doc["verified_at"].items())
    console.print(f"shape range {axes}: verified at {at} (mid: {doc['mid']})", highlight=False, soft_wrap=True)


def _score(value: float | None, changed: bool | None) -> str:
    """A sample's metric, marked where its task result differs from the reference's."""
    if value is None:
        return "-"
    return f"[red]{value:.4g} changed[/red]" if changed else f"{value:.4g}"
