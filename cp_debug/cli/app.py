"""cpdebug's command group (`app`): every command of cli/*_cmd.py under its name, in the one error mapping
(`_Commands.invoke`, `cli/_errors.py`), with the help pages polished (`cli/_help.py`). Importing it imports every
command module (0.15-0.2 CPU s with typer); `cli/main.py`'s entry point imports it only for a command it runs itself,
not for one it hands to a server."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from cp_debug.cli import backends_cmd, bisect_cmd, export_cmd, extract_cmd, infer_cmd, keep_fp32_cmd, report_cmd
from cp_debug.cli import quantize_cmd, sensitivity_cmd
from cp_debug.cli import scenes_cmd
from cp_debug.cli import train_cmd
from cp_debug.cli import eval_cmd
from cp_debug.cli import bench_cmd
from cp_debug.cli import replay_cmd
from cp_debug.cli import sweep_cmd
from cp_debug.cli import fix_cmd
from cp_debug.cli import trt_kit_cmd
from cp_debug.cli import lint_cmd
from cp_debug.cli import serve_cmd
from cp_debug.cli._errors import handle_errors
from cp_debug.cli._help import command_settings, polish, renamed, root_epilog
from cp_debug.cli._pipe import help_shown


class _HelpPage:
    """A command (or the group) whose help page is noted as one: cut short by a reader that closed the pipe, it still
    ends 0 (`cli/_pipe.py`)."""

    def format_help(self, ctx, formatter):
        help_shown()
        return super().format_help(ctx, formatter)

    def get_help_option(self, ctx):
        """--help, a flag: no type shown beside it."""
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Commands(_HelpPage, TyperGroup):
    """cpdebug's command group: runs the chosen command inside the one error mapping (`handle_errors`), so that
    `main()` and a test's `CliRunner().invoke(app, ...)` see the same one-line errors and exit codes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        polish(self)

    def invoke(self, ctx):
        with handle_errors():
            return super().invoke(ctx)


class _Command(_HelpPage, TyperCommand):
    """One cpdebug command; its help page escaped for rich markup and its metavars named (`cli/_help.py`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        polish(self)

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, renamed(self.name, args))


app = typer.Typer(
    cls=_Commands,
    name="cpdebug",
    help="Find where a deployed model (ONNX Runtime, TensorRT) parts from PyTorch, and why.",
    epilog=root_epilog(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        import cp_debug

        print(f"cpdebug {cp_debug.__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Print cp_debug's version and exit.")] = False):
    """Find where a deployed model (ONNX Runtime, TensorRT) parts from PyTorch, and why."""


app.command("bisect", cls=_Command, **command_settings("bisect"))(bisect_cmd.bisect)
app.command("sweep", cls=_Command, **command_settings("sweep"))(sweep_cmd.sweep)
app.command("report", cls=_Command, **command_settings("report"))(report_cmd.report)
app.command("extract", cls=_Command, **command_settings("extract"))(extract_cmd.extract)
app.command("fix", cls=_Command, **command_settings("fix"))(fix_cmd.fix)
app.command("keep-fp32", cls=_Command, **command_settings("keep-fp32"))(keep_fp32_cmd.keep_fp32)
app.command("quantize", cls=_Command, **command_settings("quantize"))(quantize_cmd.quantize)
app.command("sensitivity", cls=_Command, **command_settings("sensitivity"))(sensitivity_cmd.sensitivity)
app.command("eval", cls=_Command, **command_settings("eval"))(eval_cmd.eval_)
app.command("replay", cls=_Command, **command_settings("replay"))(replay_cmd.replay)
app.command("bench", cls=_Command, **command_settings("bench"))(bench_cmd.bench)
app.command("lint", cls=_Command, **command_settings("lint"))(lint_cmd.lint)
app.command("export", cls=_Command, **command_settings("export"))(export_cmd.export)
app.command("infer", cls=_Command, **command_settings("infer"))(infer_cmd.infer)
app.command("trt-kit", cls=_Command, **command_settings("trt-kit"))(trt_kit_cmd.trt_kit)
app.command("scenes", cls=_Command, **command_settings("scenes"))(scenes_cmd.scenes)
app.command("train", cls=_Command, **command_settings("train"))(train_cmd.train)
app.command("backends", cls=_Command, **command_settings("backends"))(backends_cmd.backends)
app.command("serve", cls=_Command, **command_settings("serve"))(serve_cmd.serve)
