"""`cpdebug backends`: which backend specs can run on this machine, and what to install for the others."""

from __future__ import annotations

from typing import Annotated

import typer

from cp_debug.cli.common.options import Verbose, option
from cp_debug.cli.common.quiet import ThirdParty


def backends(
    json_out: Annotated[bool, option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Verbose = False,
) -> None:
    """List every backend spec (torch/ort/trt/trt-rtx × device × precision) and whether it is available here
    ('builds only': TensorRT-RTX without a GPU it runs on), then the TensorRT paths: an engine built here, your
    prebuilt engines, results read from a kit (no TensorRT needed)."""
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.backends.factory import availability, runs_here, tensorrt_paths
        from cp_debug.backends.spec import BackendSpec
        from cp_debug.determinism import environment

        rows, paths, env = availability(), tensorrt_paths(), environment()
        runs = {s: ok and ("@" in s or runs_here(BackendSpec.parse(s), env)) for s, ok, _ in rows}
        if json_out:
            import json

            typer.echo(json.dumps({"specs": [{"spec": s, "available": ok, "runs_here": runs[s], "reason": why}
                                             for s, ok, why in rows],
                                   "tensorrt_paths": [{"path": p, "available": ok, "reason": why}
                                                      for p, ok, why in paths]}, indent=2))
            return
        from rich.markup import escape
        from rich.table import Table

        from cp_debug.cli.common.output import stdout_console

        table = Table(title="cp_debug backends")
        table.add_column("spec", style="bold")
        table.add_column("available")
        table.add_column("runs on / what to install", overflow="fold")
        for spec, ok, why in rows:  # "[gpu]" in a reason is not markup
            state = "[green]yes[/green]" if runs[spec] else "[yellow]builds only[/yellow]" if ok else "[red]no[/red]"
            table.add_row(spec, state, escape(why))
        trt = Table(title="TensorRT results: how they can enter a run here")
        trt.add_column("path", overflow="fold")
        trt.add_column("available")
        trt.add_column("why / what to install", overflow="fold")
        for path, ok, why in paths:
            trt.add_row(escape(path), "[green]yes[/green]" if ok else "[red]no[/red]", escape(why))
        console = stdout_console()
        console.print(table)
        console.print(trt)
        third_party.print_count(console, where=None)
