"""numba's comparison kernels compiled once a test run, not once a process (`cp_debug/compare/kernels.py`).

The kernels are `cache=True`: numba writes what it compiles beside their source (`cp_debug/compare/__pycache__`),
and a process that finds it there loads it (about 1.7 CPU s). On a fresh clone nothing is there yet: compiling
the six specialisations `kernels.warm_up` asks for takes about 14 CPU s on the 2-core CPU machine, and every
process that reached a comparison before the first one had written its cache compiled them too (both xdist
workers start on comparing tests at once, and so do the `cpdebug` processes their first tests start).

Here xdist's controller, which runs no test, compiles them on a thread while the workers collect, holding an
exclusive `flock` on a file the workers are told of (CPDEBUG_TEST_KERNELS_LOCK). Each worker holds the kernels'
own lock (`kernels._LOCK`, taken by every first use) on a thread until it gets a shared `flock` on that file: a
comparison a test makes meanwhile waits for the controller's compile, then loads it from numba's cache. The
kernels, their cache and every number they give are the same; where numba is missing nothing is compiled and
nothing waits. Where the controller dies, the OS drops its lock and the workers go on (compiling if need be)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading

LOCK_ENV = "CPDEBUG_TEST_KERNELS_LOCK"


def compile_in_the_controller() -> None:
    """In xdist's controller, before it starts the workers: the lock taken, the compile started on a thread."""
    from cp_debug.compare import kernels

    fd, path = tempfile.mkstemp(prefix="cpdebug-test-kernels-", suffix=".lock")
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.environ[LOCK_ENV] = path

    def run() -> None:
        try:
            kernels.warm_up()
        except Exception:  # noqa: BLE001 - the workers then compile for themselves, as without this
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            os.unlink(path)

    threading.Thread(target=run, name="cpdebug-test-kernels", daemon=True).start()


def wait_in_a_worker() -> None:
    """In a worker: its kernels' first use waits until the controller's compile is done (see the module)."""
    path = os.environ.get(LOCK_ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # the controller is done already (it removes the file when it is)
        return
    from cp_debug.compare import kernels

    taken = threading.Event()

    def hold() -> None:
        with kernels._LOCK:
            taken.set()
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    threading.Thread(target=hold, name="cpdebug-test-kernels-wait", daemon=True).start()
    taken.wait()  # the kernels' lock is held before any test can reach them
