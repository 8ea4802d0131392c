"""A `cpdebug serve` of a benchmark's own, for the runs through it (`ray_scaling.py --served`): started with the
runs' environment, a first command run through it (what it keeps is then up), stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

CLI = [sys.executable, "-m", "cp_debug.cli.main"]


@contextmanager
def serving(env: dict, first: list[str]) -> Iterator[dict]:
    """The server up under `env` (stopped first where one is up), `first` (a command line) run through it; yields
    {"seconds": the start and the first command's, "frames": the first command's `--n`}. Exits where either fails."""
    t0 = time.perf_counter()
    subprocess.run([*CLI, "serve", "--stop", "-q"], env=env, check=False)
    up = subprocess.run([*CLI, "serve", "-q", "--idle-minutes", "30"], env=env, capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"cpdebug serve: exit {up.returncode}\n{up.stderr[-2000:]}")
    try:
        done = subprocess.run(first, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode not in (0, 1, 4):
            sys.exit(f"{' '.join(first)}: exit {done.returncode}\n{done.stderr[-3000:]}")
        yield {"seconds": time.perf_counter() - t0, "frames": int(first[first.index("--n") + 1])}
    finally:
        subprocess.run([*CLI, "serve", "--stop", "-q"], env=env, check=False)
