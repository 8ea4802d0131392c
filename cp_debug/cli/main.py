"""`cpdebug`: the command-line entry point. Each command group lives in its own module; the command group itself,
`app`, in `cli/app.py`.

Errors are mapped once, for every command (`app._Commands.invoke`, `cli/common/errors.py`): a CpDebugError is one
line and its exit code, Ctrl-C is "interrupted" (130), anything else is a bug: one line, exit 70, its traceback in
a file the line names. Click's own usage errors (exit 2), `--help` and `--version` are click's. Output to a pipe
whose reader went away ends the program quietly, with 141 (`cli/common/pipe.py`).

The entry point hands a command to this environment's server, where one is up, before it imports any command:
`cpdebug` then costs its caller Python and the server's client (0.13 CPU s), not typer and the command's module
besides (`cli/app.py` builds only the command that runs). `app` is imported on first use: `main()`, or
`from cp_debug.cli.main import app` (`__getattr__`).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from cp_debug.cli.common.errors import exit_status
from cp_debug.cli.common.pipe import exit_code, flush, guard
from cp_debug.heap import collect_less
from cp_debug.openmp import sleeping_threads


def __getattr__(name: str):
    """`app`, cpdebug's command group, imported when first asked for (see the module's docstring)."""
    if name == "app":
        from cp_debug.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The command line in `sys.argv`; it ends in SystemExit with the command's exit code (click's standalone mode),
    which a caller in Python can catch. The command group builds only the command that runs (`app.command_group`)."""
    from cp_debug.cli.app import command_group

    command_group()()


def entry() -> NoReturn:
    """The `cpdebug` program (its console script, `python -m cp_debug.cli.main`): the command in this environment's
    server where one is up (`cp_debug/server/`), else `main()`; then the process ends through `leave` with its exit
    code."""
    from cp_debug.server.client import forward

    sleeping_threads()
    guard()  # a closed pipe ends the program quietly (cli/common/pipe.py)
    code = forward(sys.argv[1:])
    if code is not None:
        leave(code)
    collect_less()  # the collector scaled to the heap a command holds (heap.py)
    try:
        main()
    except SystemExit as done:
        leave(done.code)
    leave(0)


def leave(code: object) -> NoReturn:
    """End the process with `code` (a `sys.exit` argument) as Python's own exit would, less the interpreter's
    teardown: the thread pools told to stop and every non-daemon thread waited for, the `atexit` functions run
    (temporary folders removed, logging flushed, a Ray cluster we started stopped), the standard streams flushed,
    then `os._exit` (with 141 where the output found no reader: `cli/common/pipe.py`). Tearing down torch, ONNX Runtime
    and numba's modules and libraries took 0.6-0.9 s of every command on the CPU machine (0.4 s for `import torch`
    alone) and writes nothing. Under a tracer or a profiler (coverage, cProfile), which write their results at the
    interpreter's exit, it exits the usual way."""
    code = exit_status(code)  # sys.exit("text") prints it and exits 1, sys.exit(None) exits 0
    if sys.gettrace() is not None or sys.getprofile() is not None or _monitored():
        flush()
        raise SystemExit(exit_code(code))
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter runs first at exit (CPython 3.9+)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    flush()
    os._exit(exit_code(code))  # 141 where the output found no reader (cli/common/pipe.py)


def _monitored() -> bool:
    """Whether a profiler or coverage watches through `sys.monitoring` (Python 3.12+: cProfile does, and coverage's
    sysmon core), which `sys.getprofile()` does not show: on the H200's Python 3.12 `python -m cProfile -o F -m
    cp_debug.cli.main bisect …` wrote no F."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return False
    return any(monitoring.get_tool(tool) is not None for tool in (monitoring.PROFILER_ID, monitoring.COVERAGE_ID))


if __name__ == "__main__":
    entry()
