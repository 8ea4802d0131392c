"""`cpdebug`: the command-line entry point. Each command group lives in its own module.

Errors are mapped here, once, for every command (`_Commands.invoke`, `cli/_errors.py`): a CpDebugError is one
line and its exit code, Ctrl-C is "interrupted" (130), anything else is a bug: one line, exit 70, its traceback in
a file the line names. Click's own usage errors (exit 2), `--help` and `--version` are click's.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

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
from cp_debug.cli import serve_cmd
from cp_debug.cli._errors import exit_status, handle_errors


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
app.command("serve")(serve_cmd.serve)


def main() -> None:
    """The command line in `sys.argv`; it ends in SystemExit with the command's exit code (click's standalone mode),
    which a caller in Python can catch."""
    app()


def entry() -> NoReturn:
    """The `cpdebug` program (its console script, `python -m cp_debug.cli.main`): the command in this environment's
    server where one is up (`cp_debug/server/`), else `main()`; then the process ends through `leave` with its exit
    code."""
    from cp_debug.server.client import forward

    code = forward(sys.argv[1:])
    if code is not None:
        leave(code)
    try:
        main()
    except SystemExit as done:
        leave(done.code)
    leave(0)


def leave(code: object) -> NoReturn:
    """End the process with `code` (a `sys.exit` argument) as Python's own exit would, less the interpreter's
    teardown: the thread pools told to stop and every non-daemon thread waited for, the `atexit` functions run
    (temporary folders removed, logging flushed, a Ray cluster we started stopped), the standard streams flushed,
    then `os._exit`. Tearing down torch, ONNX Runtime and numba's modules and libraries took 0.6-0.9 s of every
    command on the CPU machine (0.4 s for `import torch` alone) and writes nothing. Under a tracer or a profiler
    (coverage, cProfile), which write their results at the interpreter's exit, it exits the usual way."""
    code = exit_status(code)  # sys.exit("text") prints it and exits 1, sys.exit(None) exits 0
    if sys.gettrace() is not None or sys.getprofile() is not None:
        raise SystemExit(code)
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter runs first at exit (CPython 3.9+)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write to
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
