"""`cpdebug ARGS` run in this process (typer's CliRunner on `cp_debug.cli.main.app`), as a `CompletedProcess`.

The same command line, the same app and the same error mapping as the entry point (`_Commands.invoke` wraps every
command in `handle_errors`), without a fresh interpreter importing torch, ONNX Runtime and cp_debug again (about
2.5 CPU seconds a run). What only a real process shows stays in subprocess tests: the entry point, fd 2 and
third-party text on the terminal (tests/cli/test_quiet_terminal.py, tests/cli/test_errors.py, tests/cli/test_help.py),
a bundle's repro.py, a killed or size-limited process (tests/fuzz/test_outputs.py), Ray workers."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping
from pathlib import Path


def cpdebug(*args, cwd: str | Path | None = None, env: Mapping[str, str | None] | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
    """`args` as typed after `cpdebug` (str() of each); stdout and stderr apart, as a subprocess gives them.
    `env`: variables set (None: unset) for the run, on top of COLUMNS=200 (a wide terminal: names do not wrap).
    `timeout` is accepted for the subprocess helpers' signature and not enforced."""
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    del timeout
    argv = [str(a) for a in args]
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        res = CliRunner().invoke(app, argv, env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)
    return subprocess.CompletedProcess(["cpdebug", *argv], res.exit_code, res.stdout, res.stderr)
