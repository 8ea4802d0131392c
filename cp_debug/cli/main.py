"""`cpdebug`: the command-line entry point. Each command group lives in its own module.

Errors are mapped here, once, for every command (`_Commands.invoke`, `cli/_errors.py`): a CpDebugError is one
line and its exit code, Ctrl-C is "interrupted" (130), anything else is a bug: one line, exit 70, its traceback in
a file the line names. Click's own usage errors (exit 2), `--help` and `--version` are click's.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

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
from cp_debug.cli._errors import handle_errors


class _Commands(TyperGroup):
    """cpdebug's command group: runs the chosen command inside the one error mapping (`handle_errors`), so that
    `main()` and a test's `CliRunner().invoke(app, ...)` see the same one-line errors and exit codes."""

    def invoke(self, ctx):
        with handle_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Commands,
    name="cpdebug",
    help="Find where a deployed model (ONNX Runtime, TensorRT) parts from PyTorch, and why.",
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


app.command("bisect")(bisect_cmd.bisect)
app.command("export")(export_cmd.export)
app.command("infer")(infer_cmd.infer)
app.command("backends")(backends_cmd.backends)
app.command("report")(report_cmd.report)
app.command("extract")(extract_cmd.extract)
app.command("keep-fp32")(keep_fp32_cmd.keep_fp32)
app.command("quantize")(quantize_cmd.quantize)
app.command("sensitivity")(sensitivity_cmd.sensitivity)
app.command("scenes")(scenes_cmd.scenes)
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.eval_)
app.command("bench")(bench_cmd.bench)
app.command("replay")(replay_cmd.replay)
app.command("sweep")(sweep_cmd.sweep)
app.command("fix")(fix_cmd.fix)
app.command("trt-kit")(trt_kit_cmd.trt_kit)
app.command("lint")(lint_cmd.lint)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
