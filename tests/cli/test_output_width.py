"""Output for people and files (issue 85, item 6): in a file or a pipe the summary box wraps at 100 columns (or
COLUMNS), not 200, while a table's rows keep their probe names whole; every help page fits 100 columns, and 80, with no
option name broken."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult
from cp_debug.compare.diff import TensorDiff
from cp_debug.files import write_json

ROOT = Path(__file__).resolve().parents[2]
LONG = "pts_backbone.blocks.1.a_module_whose_qualified_name_runs_long.and_longer_still.conv_{i}"
WARNING = "a warning long enough to wrap: " + "the summary box must wrap this text at the width of the file " * 3


def _long_names_report(tmp_path: Path) -> Path:
    probes = [Probe(i, LONG.format(i=i), None, "Conv") for i in range(6)]
    results = []
    for p in probes:
        d = TensorDiff.from_arrays(p.name, [1.0, 2.0], [1.0 + (p.index >= 3), 2.0])
        results.append(ProbeResult(p.name, d.status, d))
    report = BisectReport("torch", [CandidateResult("ort", "ort-cpu-fp32", results, first_divergent=LONG.format(i=3))],
                          probes)
    report.warnings.append(WARNING)
    return write_json(tmp_path / "run.json", report)


def _report_to_a_file(run_json: Path, tmp_path: Path, columns: str | None) -> list[str]:
    """`cpdebug report RUN_JSON > out.txt`, as a user redirects it (no terminal; COLUMNS as given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    if columns is not None:
        env["COLUMNS"] = columns
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "report", str(run_json)], stdout=f,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return out.read_text().splitlines()


@pytest.mark.parametrize("columns, width", [(None, 100), ("120", 120)])
def test_in_a_file_the_box_wraps_and_the_rows_stay_whole(tmp_path, columns, width):
    lines = _report_to_a_file(_long_names_report(tmp_path), tmp_path, columns)
    box = [line for line in lines if line[:1] in "╭│╰"]
    assert box and width - 10 <= max(len(line) for line in box) <= width  # was 200 wide in a file
    assert sum("summary box must wrap" in line for line in box) >= 2  # the warning wraps inside the box
    for i in range(6):  # each probe's row on one line, its name whole: grep finds it
        rows = [line for line in lines if LONG.format(i=i) in line and line[:1] not in "╭│╰"
                and re.search(r"\b(ok|diverged)\b", line)]
        assert len(rows) == 1 and rows[0].split()[0] == str(i), (i, rows)


def test_a_terminal_narrower_than_a_name_folds_it():
    """On a terminal the table fits the terminal's width (rich folds the names), as before."""
    import io

    from rich.console import Console

    from cp_debug.report.table import render_table

    report = BisectReport("torch", [CandidateResult("ort", "ort-cpu-fp32", [
        ProbeResult(LONG.format(i=0), "ok", TensorDiff.from_arrays("x", [1.0], [1.0]))])],
        [Probe(0, LONG.format(i=0), None, "Conv")])
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    render_table(report, console)
    assert max(len(line) for line in console.file.getvalue().splitlines()) <= 80


HELP_WIDTHS = (80, 100)  # a terminal's usual width, and what a file or a pipe gets
GROUP = typer.main.get_command(__import__("cp_debug.cli.main", fromlist=["app"]).app)
EVERY = {o for c in GROUP.commands.values() for p in c.params for o in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("width", HELP_WIDTHS)
@pytest.mark.parametrize("name", sorted(GROUP.commands))
def test_help_fits_the_width_and_breaks_no_option_name(name, width, monkeypatch):
    """At 80 columns as at 100 (issue 85, item 1: names broke mid-word below 100), every option is shown whole."""
    import typer.rich_utils

    from cp_debug.cli.main import app

    # typer reads TERMINAL_WIDTH once, when typer.rich_utils is first imported: in one process another test's help
    # page (tests/cli/test_help_pages.py asks for 250) may have fixed it already
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", width)
    env = {"COLUMNS": str(width), "TERMINAL_WIDTH": str(width)}
    text = CliRunner().invoke(app, [name, "--help"], env=env).stdout
    assert max(len(line) for line in text.splitlines()) <= width
    named = set(re.findall(r"--[a-z0-9][a-z0-9-]*", text))
    options = [o for p in GROUP.commands[name].params if not getattr(p, "hidden", False) for o in p.opts
               if o.startswith("--")]
    assert [o for o in options if o not in named] == []  # each shown whole at least once (its own row)
    # no piece of a broken name: a token that is no option of any command, but the start of one
    assert [t for t in named if t not in EVERY and any(o.startswith(t) for o in EVERY)] == []


@pytest.mark.parametrize("name", ["quantize", "export", "fix"])  # the pages whose names broke at 80 columns
def test_a_fresh_process_at_80_columns_breaks_no_name(name):
    """As a user's terminal runs it: a new process, COLUMNS=80 (typer reads the width once, at its import)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERMINAL_WIDTH")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env["COLUMNS"] = "80"
    proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", name, "--help"], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    named = set(re.findall(r"--[a-z0-9][a-z0-9-]*", proc.stdout))
    assert [t for t in named if t not in EVERY and any(o.startswith(t) for o in EVERY)] == []
