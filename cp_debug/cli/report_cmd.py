"""`cpdebug report`: render a saved run (`cpdebug bisect --json run.json`) as a table, HTML, CSV or Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import option

def report(
    run_json: Annotated[Path, typer.Argument(help="A report written by `cpdebug bisect --json FILE`.")],
    html: Annotated[Optional[Path], option("--html", help="Write a self-contained HTML report with plots.")] = None,
    csv: Annotated[Optional[Path], option("--csv", help="Write the results table as CSV.")] = None,
    parquet: Annotated[Optional[Path], option(
        "--parquet", help="Write the results table as Parquet (needs pyarrow).")] = None,
    json_out: Annotated[Optional[Path], option("--json", help="Write the report again as strict JSON.")] = None,
    max_rows: Annotated[Optional[int], typer.Option(help="Elide unremarkable rows of tables longer than this.")] = None,
    quiet: Annotated[bool, option("--quiet", "-q", help="No table; only write the requested files.")] = False,
) -> None:
    """Show a saved run's tables and summary, and write it as HTML / CSV / Parquet / JSON.
    """
    from rich.console import Console

    from cp_debug.cli.common.output import stdout_console
    from cp_debug.report.io import load_report

    rep = load_report(run_json)
    if not quiet:
        from cp_debug.report.table import render_table

        render_table(rep, stdout_console(), max_rows=max_rows)
    written = []
    if html:
        from cp_debug.report.html import write_html

        written.append(write_html(rep, html))
    if csv:
        from cp_debug.report.frames import write_csv

        written.append(write_csv(rep, csv))
    if parquet:
        from cp_debug.report.frames import write_parquet

        written.append(write_parquet(rep, parquet))
    if json_out:
        from cp_debug.files import write_json

        written.append(write_json(json_out, rep))
    err = Console(stderr=True)
    for path in written:
        err.print(f"[dim]wrote {path}[/dim]", highlight=False)
