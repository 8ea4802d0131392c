"""CLI error mapping, applied once around every command (cli/app.py): a CpDebugError becomes one line on stderr
and its exit code; an exception raised from the user's own code (a `--torch` file's `build()`, their module's
forward: `errors.UserCodeError.of`) is their error, one line naming their file and line, exit 2; Ctrl-C becomes
"cpdebug: interrupted" and exit 130; a closed pipe is quiet (`cli/common/pipe.py`); any other exception is a bug of
cp_debug: one line naming it and the file that holds its traceback (for a bug report), exit 70
(`ExitCode.INTERNAL`), so a CI tells a crash from "divergence found".

The traceback is shown in full only with CPDEBUG_DEBUG=1 (the exception is then re-raised as it came).
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

from cp_debug.cli.common.pipe import cut_short, output_closed
from cp_debug.errors import CpDebugError, ExitCode, UserCodeError, debug_enabled


@contextmanager
def handle_errors():
    import typer

    try:
        yield
    except CpDebugError as err:
        _error_line(err)
    except KeyboardInterrupt:
        print("cpdebug: interrupted", file=sys.stderr)
        raise SystemExit(ExitCode.INTERRUPTED) from None
    except (typer.exceptions.TyperException, typer.Exit, typer.Abort):
        raise  # usage errors (typer's click), typer.Exit(code) and aborts are click's to handle
    except Exception as err:  # noqa: BLE001 - the one place a bug of cp_debug becomes exit 70
        if isinstance(err, BrokenPipeError) and output_closed():  # our reader went away: quietly (cli/common/pipe.py)
            raise SystemExit(cut_short()) from None
        user = UserCodeError.of(err)
        if user is not None:  # the user's model raised: their error (exit 2), not ours
            _error_line(user, err)
        missing = missing_requirement(err)
        if missing is not None:  # a library cp_debug requires is not installed: the install's fault (exit 3)
            _error_line(missing, err)
        if debug_enabled():
            raise
        print(internal_error_line(err), file=sys.stderr)
        raise SystemExit(ExitCode.INTERNAL) from None


def _error_line(err: CpDebugError, raised: BaseException | None = None) -> None:
    """"cpdebug: error: <the first line of err>" on stderr, then exit with its code; with CPDEBUG_DEBUG=1 the
    exception as it came (`raised`, else `err`) is re-raised instead."""
    if debug_enabled():
        raise raised or err
    msg = str(err).strip().splitlines()
    print(f"cpdebug: error: {msg[0] if msg else type(err).__name__}", file=sys.stderr)
    raise SystemExit(err.exit_code) from None


def missing_requirement(err: BaseException) -> CpDebugError | None:
    """A library cp_debug's own install requires (pyproject's `dependencies`, not an extra's) that cannot be imported
    here (a `ModuleNotFoundError` naming it): one line with the pip line, exit 3 — the environment's fault, not a bug
    of cp_debug. Extras say their own hints where they are imported (`imports.optional`)."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    from importlib import metadata

    from cp_debug.errors import BackendUnavailableError

    try:
        required = [r for r in metadata.requires("cp-debug") or () if "extra ==" not in r]
    except metadata.PackageNotFoundError:  # run from a copy of the tree that is not installed
        return None
    top = err.name.split(".")[0]
    for req in required:
        spec = req.split(";")[0].strip()
        dist = re.match(r"[A-Za-z0-9._-]*", spec).group(0)  # the name before any extras or version (PEP 508)
        if dist.lower().replace("-", "_") == top.lower():
            return BackendUnavailableError(
                f"cp_debug needs {dist}, which is not installed in this Python ({sys.executable}): pip install "
                f"'{spec}' (or reinstall cp_debug: pip install -e .)")
    return None


def exit_status(code: object) -> int:
    """A `sys.exit` argument as the exit status Python would give it: an int as it is, None 0, anything else 1 after
    printing it on stderr."""
    if isinstance(code, int):
        return code
    if code is not None:
        print(code, file=sys.stderr)
    return 0 if code is None else 1


def internal_error_line(err: BaseException) -> str:
    """"cpdebug: internal error: Type: message — a bug of cp_debug; …", the traceback written to a file it names
    (or, where no file can be written, printed above the line)."""
    import platform
    import tempfile
    import traceback

    import cp_debug

    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    msg = str(err).strip().splitlines()
    head = f"cpdebug: internal error: {type(err).__name__}: {msg[0] if msg else '(no message)'}"
    try:
        fd, path = tempfile.mkstemp(prefix="cpdebug-internal-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"cp_debug {cp_debug.__version__}, Python {platform.python_version()}, {platform.platform()}\n"
                    f"argv: {sys.argv}\n\n{text}")
        where = f"the traceback is in {path}"
    except OSError:
        print(text, file=sys.stderr, end="")
        where = "the traceback is above"
    return f"{head} — a bug of cp_debug; {where} (CPDEBUG_DEBUG=1 prints it): please report it"
