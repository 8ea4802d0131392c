"""A report's rich view: what one of the command's printers prints, at the width of the console that shows it."""

from __future__ import annotations


class Shown:
    """A view printed by one of the command's printers (`show(console)`), at the width of the console that shows it
    (rich's `__rich__` of the reports)."""

    def __init__(self, show):
        self.show = show

    def __rich_console__(self, console, options):
        import io

        from rich.console import Console
        from rich.text import Text

        buffer = io.StringIO()
        self.show(Console(file=buffer, width=options.max_width, color_system=console.color_system,
                          force_terminal=console.color_system is not None))
        yield Text.from_ansi(buffer.getvalue())
