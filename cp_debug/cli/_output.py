"""All terminal output goes through here: rich on stderr for progress, stdout for tables and JSON."""

from __future__ import annotations

import contextlib
import time


class StepProgress:
    """A spinner per long step, and one finished line with its wall time (on stderr, so stdout stays clean)."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, text: str):
        t0 = time.perf_counter()
        if self.quiet or not self.console.is_terminal:
            yield
        else:
            with self.console.status(text, spinner="dots"):
                yield
        dt = time.perf_counter() - t0
        self.timings.append((text, dt))
        if not self.quiet:
            self.console.print(f"[dim]✓ {text} ({dt:.1f} s)[/dim]", highlight=False)


def stdout_console():
    """Tables to stdout; when piped (no terminal, no COLUMNS), wide enough that probe names do not wrap."""
    import os
    import sys

    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=200)
