"""One Ray test module at a time on this machine: a local cluster that one pytest-xdist worker starts is what another
worker's `--ray auto` would find and join (Ray scans the machine's processes for a cluster), and a cluster shut down
under a joined driver kills its actors. Each module that starts or looks for a cluster holds this lock throughout."""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# the system's temporary folder, not the run's own (tests/conftest.py): Ray clusters are the machine's, so the lock is
# every run's on this machine; an empty file, never removed (another run may hold it)
LOCK = Path(os.environ.get("CPDEBUG_TESTS_SYSTEM_TMP") or tempfile.gettempdir()) / "cpdebug-tests-ray.lock"


@contextmanager
def one_ray_module() -> Iterator[None]:
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        yield
