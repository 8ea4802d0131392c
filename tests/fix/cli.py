"""`cpdebug fix` in a fresh process, as a user runs it (wide terminal: names do not wrap)."""

from __future__ import annotations

import os
import subprocess
import sys


def cpdebug(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "fix", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env)
