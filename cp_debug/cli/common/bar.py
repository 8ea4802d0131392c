"""A rich progress bar with ETA on stderr (silent with quiet), for commands that loop over many items."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_bar(description: str, total: int, quiet: bool = False, stream=None):
    """Yields `advance(n=1, **fields)`; `fields` (e.g. loss=...) are shown after the bar. `stream`: where to draw
    instead of stderr (`ThirdParty.terminal` while fd 2 is captured; sys.stderr is then left to the capture). The
    built-in demo is named first where the command runs it (`cli/common/what_runs.py`), even when quiet."""
    from cp_debug.cli.common.what_runs import say_what_runs

    say_what_runs(stream)
    if quiet:
        yield lambda n=1, **fields: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    console = Console(file=stream) if stream is not None else Console(stderr=True)
    with Progress(*columns, console=console, transient=False, redirect_stderr=stream is None) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields) -> None:
            info = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            progress.update(task, advance=n, **({"info": info} if fields else {}))

        yield advance
