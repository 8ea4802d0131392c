"""For tests only: a server held at a named phase, so that a test sends its signal (or its next command) exactly there.

`CPDEBUG_SERVER_HOLD="PHASE:FILE"` makes `cpdebug serve` (the caller that starts the server, and the server it starts)
stop at PHASE, write the server's pid to FILE and wait there until FILE is removed, the code's `until()` holds (a
signal it handles came) or a minute has passed. Without the variable `at` returns at once. The phases of the start,
in order: `spawned` (the caller: the server process made, not yet waited for), `imports` (the server: cp_debug's
modules loaded, the libraries' warm-up to come), `handler` (the server: warmed up, its signal handlers not yet set),
`socket` (the server: its socket bound, not yet listening), `answered` (the caller: the server answered, the start
not yet done). Once it serves: `command` (a command's turn, read from the environment the caller sent: the caller's
folder, environment and streams in place, a Ctrl-C interrupts it, the command itself not yet begun) and `idle` (the
server's own variable: no command in line, its idle time not yet counting).
"""

from __future__ import annotations

import os
import time
from typing import Callable

HOLD_ENV = "CPDEBUG_SERVER_HOLD"
PHASES = ("spawned", "imports", "handler", "socket", "answered")  # the start's
_HOLD_S = 60.0


def at(phase: str, pid: int, until: Callable[[], bool] | None = None) -> None:
    """Hold here where `CPDEBUG_SERVER_HOLD` names `phase` (see the module's docstring); `pid` is the server's."""
    name, _, marker = os.environ.get(HOLD_ENV, "").partition(":")
    if name != phase or not marker:
        return
    with open(f"{marker}.tmp", "w", encoding="utf-8") as f:
        f.write(str(pid))
    os.replace(f"{marker}.tmp", marker)  # whole when the test reads it
    deadline = time.monotonic() + _HOLD_S
    while os.path.exists(marker) and not (until is not None and until()) and time.monotonic() < deadline:
        time.sleep(0.01)
