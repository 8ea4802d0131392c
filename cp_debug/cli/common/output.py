"""All terminal output goes through here: rich on stderr for progress, stdout for tables and JSON."""

from __future__ import annotations

import contextlib
import sys
import time


class StepProgress:
    """A spinner per long step, and one finished line with its wall time (on stderr, so stdout stays clean)."""

    def __init__(self, quiet: bool = False, stream=None):
        """`stream`: where to write instead of stderr (`_quiet.ThirdParty.terminal` while fd 2 is captured)."""
        from rich.console import Console

        self.console = Console(file=stream) if stream is not None else Console(stderr=True)
        self.own_stream = stream is not None
        self.quiet = quiet
        self.stream = stream
        self.timings: list[tuple[str, float]] = []

    def note(self, text: str) -> None:
        """One dim line (nothing when quiet): what a long step just did, e.g. one run of a search."""
        from cp_debug.cli.common.what_runs import say_what_runs

        say_what_runs(self.stream)  # the built-in demo named before anything the command says of its run
        if not self.quiet:
            self.console.print(f"[dim]  {text}[/dim]", highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        """One line that something did not come out as asked (printed even when quiet)."""
        from rich.markup import escape

        from cp_debug.cli.common.what_runs import say_what_runs

        say_what_runs(self.stream)
        self.console.print(f"[yellow]! {escape(text)}[/yellow]", highlight=False, soft_wrap=True)

    def bar(self, description: str, total: int):
        """A progress bar with ETA over `total` items (`cli.common.bar.progress_bar`): yields `advance(n=1,
        **fields)`."""
        from cp_debug.cli.common.bar import progress_bar

        return progress_bar(description, total, self.quiet, self.stream)

    @contextlib.contextmanager
    def step(self, text: str, final: bool = True):
        """`final=False`: one of many small steps (a lockstep's segments) — its live line on a terminal only, no
        finished line (84 segments made 84 lines), nothing in a pipe."""
        from cp_debug.cli.common.what_runs import say_what_runs

        say_what_runs(self.stream)  # the built-in demo named before the first step, even when quiet
        t0 = time.perf_counter()
        if self.quiet or not self.console.is_terminal:
            yield
        else:
            from rich.live import Live
            from rich.spinner import Spinner

            # sys.stderr is left alone while fd 2 is captured, so that third-party text goes to the capture
            with Live(Spinner("dots", text=text, style="status.spinner"), console=self.console, transient=True,
                      refresh_per_second=12.5, redirect_stderr=not self.own_stream):
                yield
        dt = time.perf_counter() - t0
        self.timings.append((text, dt))
        if not self.quiet and final:
            self.console.print(f"[dim]✓ {text} ({dt:.1f} s)[/dim]", highlight=False, soft_wrap=True)


FILE_WIDTH = 100
"""The width of the text a command writes to a file or a pipe where COLUMNS is not set: the summary box wraps there;
a table's rows stay whole however wide (`report.table.print_whole`)."""


def stdout_console():
    """Tables to stdout: at a terminal's width; in a file or a pipe, at COLUMNS where it is set, else `FILE_WIDTH`."""
    import os
    import sys

    from rich.console import Console

    columns = os.environ.get("COLUMNS", "").strip()
    if sys.stdout.isatty() or (columns.isdigit() and int(columns) > 0):
        return Console()
    return Console(width=FILE_WIDTH)


def with_runs_on() -> dict:
    """`{"runs_on": ...}`: what the command that runs runs on (`cli/common/what_runs.py`), for its JSON; {} where the
    command records none."""
    from cp_debug.cli.common.what_runs import runs_on

    record = runs_on()
    return {} if record is None else {"runs_on": record}


def with_own(doc: dict, third_party) -> dict:
    """`doc` with what the run ran on (`runs_on`), the third-party warnings caught so far (`third_party_warnings`) and,
    after its `warnings`, cp_debug's own notes raised as warnings that it does not hold yet (`ThirdParty.own`)."""
    doc = {**doc, **with_runs_on(), "third_party_warnings": [w.to_json() for w in third_party.warnings()]}
    if own := third_party.own(beside=doc.get("warnings") or ()):
        doc["warnings"] = [*(doc.get("warnings") or []), *own]
    return doc


def finish(doc: dict, json_out: str | None, third_party, show) -> None:
    """A command's result: with `--json -` the JSON on stdout; else `show(console)` (the tables), the JSON written
    to `--json FILE` if given, and the one count line of third-party warnings. The JSON is `doc` plus the
    third-party warnings caught so far (`third_party_warnings`, from `_quiet.ThirdParty`) and what the run ran on
    (`runs_on`: the built-in demo where no model was named)."""
    from cp_debug.files import json_text, write_json

    doc = with_own(doc, third_party)
    if json_out == "-":
        print(json_text(doc))
        return
    console = stdout_console()
    show(console)
    if json_out:
        write_json(json_out, doc)
    third_party.print_count(console, where="the JSON's third_party_warnings" if json_out else None)


def read_budget_for(path, command: str):
    """`--budget FILE` read and checked against what `command` measures, before the run (None when not given)."""
    if path is None:
        return None
    from cp_debug.eval.gates import read_budget
    from cp_debug.recipes import catalog

    # a budget's head limits are the default recipe's head maps (CenterPoint's pair's), whatever recipe runs
    budget = read_budget(path, catalog.recipe().head_outputs)
    budget.check_measurable(command)
    return budget


def budget_verdict(budget, figures, stream=None):
    """The budget checked on a run's figures (`eval.gates.CandidateFigures`): each broken limit in one line on `stream`
    (stderr; a command's `ThirdParty.terminal` while it captures) with its figure and limit, or one line saying all
    hold. Returns (checks, exit code: 1 broken, 0 all hold)."""
    from cp_debug.eval.gates import budget_checks, budget_exit

    checks = budget_checks(budget, figures)
    broken = [c for c in checks if c.broken]
    for c in broken:
        print(f"cpdebug: budget broken: {c.text()}", file=stream or sys.stderr, flush=True)
    if not broken:
        print(f"cpdebug: budget {budget.path}: all {len(checks)} check(s) of {len(budget.keys)} limit(s) hold",
              file=stream or sys.stderr, flush=True)
    return checks, budget_exit(checks)


def gates_exit(checks, stream=None) -> int | None:
    """The gates a CI set (`eval.gates.GateCheck`s): the broken ones in one line on `stream` (stderr; a command's
    `ThirdParty.terminal` while it captures), and their exit code (`ExitCode.DIVERGED`; None when none is broken,
    so the command's own code stands)."""
    from cp_debug.eval.gates import broken_line, gate_exit

    line = broken_line(checks)
    if line:
        print(f"cpdebug: {line}", file=stream or sys.stderr, flush=True)
    return gate_exit(checks)


def print_targets(pairs, json_out: str | None, third_party) -> int:
    """`bisect --backends trt-fp16@KIT_A,trt-fp16@KIT_B[,…]`: each candidate target's results against the first's,
    on the kits' one file (`kit/targets.py`); the exit code of the worst outcome (0 none moved)."""
    from cp_debug.compare.noise import worst
    from cp_debug.kit.targets import compare_targets

    reports = [compare_targets(pairs[0], cand) for cand in pairs[1:]]
    if not reports:
        from cp_debug.errors import BadInputError

        raise BadInputError(f"--backends {pairs[0][0]}: give a second target to compare it with "
                            f"(--backends {pairs[0][0]},trt-fp16@OTHER_KIT)")

    def show(console) -> None:
        for r in reports:
            for line in r.lines():
                console.print(line, soft_wrap=True, markup=False, highlight=False)

    finish({"schema": "cp_debug.targets/1", "comparisons": [r.to_json() for r in reports]}, json_out, third_party,
           show)
    return int(worst(r.outcome for r in reports).exit_code)
