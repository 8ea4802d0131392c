"""`cpdebug backends`: which backend specs can run on this machine, and what to install for the others."""

from __future__ import annotations

from typing import Annotated

import typer

from cp_debug.cli._options import Verbose
from cp_debug.cli._quiet import ThirdParty


def backends(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Verbose = False,
) -> None:
    """List every backend spec (torch/ort/trt × device × precision) and whether it is available here."""
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.backends.factory import availability

        rows = availability()
        if json_out:
            import json

            typer.echo(json.dumps([{"spec": s, "available": ok, "reason": why} for s, ok, why in rows], indent=2))
            return
        from rich.markup import escape
        from rich.table import Table

        from cp_debug.cli._output import stdout_console

        table = Table(title="cp_debug backends")
        table.add_column("spec", style="bold")
        table.add_column("available")
        table.add_column("runs on / what to install", overflow="fold")
        for spec, ok, why in rows:
            table.add_row(spec, "[green]yes[/green]" if ok else "[red]no[/red]", escape(why))  # "[gpu]" is not markup
        console = stdout_console()
        console.print(table)
        third_party.print_count(console, where=None)
