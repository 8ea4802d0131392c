"""CLI error mapping, applied once around every command (cli/main.py): a CpDebugError becomes one line on stderr
and its exit code; Ctrl-C becomes "cpdebug: interrupted" and exit 130.

The traceback is shown only with CPDEBUG_DEBUG=1; internal bugs (any other exception) keep theirs.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from cp_debug.errors import CpDebugError


def debug_enabled() -> bool:
    return os.environ.get("CPDEBUG_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


@contextmanager
def handle_errors():
    try:
        yield
    except CpDebugError as err:
        if debug_enabled():
            raise
        msg = str(err).strip().splitlines()
        print(f"cpdebug: error: {msg[0] if msg else type(err).__name__}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        print("cpdebug: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
