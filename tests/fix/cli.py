"""`cpdebug fix ARGS` as a user runs it (wide terminal: names do not wrap), in process (`tests/cli_run.py`)."""

from __future__ import annotations

from tests.cli_run import cpdebug as _cpdebug


def cpdebug(*args):
    return _cpdebug("fix", *args)
