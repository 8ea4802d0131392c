"""Helpers of the tests that start cpdebug servers in real processes, on sockets of their own (the `server` fixture
is in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def serve_env(sock: Path, **extra) -> dict[str, str]:
    """This environment for a cpdebug process that uses (or starts) the server at `sock`."""
    env = {k: v for k, v in os.environ.items() if k != "CPDEBUG_SERVER"}  # conftest turns servers off
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update({"PYTHONPATH": path, "CPDEBUG_SERVER_SOCKET": str(sock)}, **extra)
    return env


def cpdebug(args: list[str], env: dict, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cp_debug.cli.main", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, **kw)


def server_log(sock: Path) -> str:
    return sock.with_suffix(".log").read_text()
