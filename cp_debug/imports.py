"""Imports that must not interleave, and what an optional library's failed import says.

Python's import lock is one per module: two threads importing different modules run side by side, and a library whose
import edits `sys.path` can undo another thread's edit. OpenCV's loader (`cv2/__init__.py`, `bootstrap`; nuscenes-devkit
imports it) copies `sys.path`, loads its extension and assigns the copy back; Ray's `__init__` (`_configure_system`)
inserts the folder of its vendored packages at `sys.path[0]`, then imports colorama and psutil from it. The sweep's
metrics helper imported the devkit while the main thread imported Ray: OpenCV's copy undid Ray's entry, Ray's
`import colorama` failed where colorama is only Ray's, and that ImportError was read as "Ray is not installed" (issue
87: `sweep --ray local` exited 3 in 2 runs of 5 and 2 of 4 on the 2-core machine).

So every import of such a library (`load`: Ray's, nuscenes-devkit's and OpenCV's with it; each optional library's
through `optional`) and every edit cp_debug makes to `sys.path` (`held`: a user's `--torch` file imported beside its
folder) runs under one lock, on whichever thread: none of them runs while another does. The other libraries helper
threads import (numba, ONNX Runtime, onnx, torch: the warm-ups, the export beside Ray's start) leave `sys.path` alone
as they load (every module of theirs, Ray's and the devkit's loaded here was read for it: OpenCV's loader and Ray's
`__init__` are the two that edit it). Not at a module's top level: a thread waiting for the lock there holds that
module's own import lock meanwhile.

`optional` tells a library that is not installed (its hint: what needs it and the pip line of its extra) from one
that is installed and fails to import (its own error, in one line: `broken`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType

from cp_debug.errors import BackendUnavailableError, CpDebugError, first_line

_LOCK = threading.RLock()


def load(name: str) -> ModuleType:
    """`importlib.import_module(name)`, with no other import of this module's running meanwhile (raises what the
    import raises). A module imported already is handed back at once: nothing is imported, so nothing waits for a
    helper's long import (the devkit's 4 s) to end."""
    done = sys.modules.get(name)
    if done is not None and not getattr(getattr(done, "__spec__", None), "_initializing", False):
        return done
    with _LOCK:
        return importlib.import_module(name)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """No import of `load` runs while the block does: for a change of `sys.path` and what is imported under it."""
    with _LOCK:
        yield


def optional(names: str | Sequence[str], hint: str, label: str | None = None,
             error: type[CpDebugError] = BackendUnavailableError) -> ModuleType:
    """The first of `names` that is installed, imported through `load`. `error(hint)` where none is; where one is
    installed but its import fails, `error` with that failure's own words (`broken`), never the hint's "install it".
    `label`: the library's name for people (Ray, nuscenes-devkit; default: the module's)."""
    for name in (names,) if isinstance(names, str) else names:
        try:
            return load(name)
        except Exception as err:  # noqa: BLE001 - an installed library may fail any way: said in its words below
            if not missing(name, err):
                raise error(broken(label or name.partition(".")[0], err)) from err
    raise error(hint)


def missing(name: str, err: BaseException) -> bool:
    """Whether `err`, raised importing `name`, says that `name` or a package it lies in is not there (not installed,
    or blocked: None in `sys.modules`). Anything else — a module it imports missing, an extension that will not
    load, an error of its own — is a library that is installed and fails to import."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return False
    return name == err.name or name.startswith(err.name + ".")


def broken(label: str, err: BaseException) -> str:
    """The line for library `label`, installed, whose import raised `err`."""
    said = first_line(err) if str(err).strip() else "(no message)"
    return (f"{label} is installed but failed to import: {type(err).__name__}: {said} (CPDEBUG_DEBUG=1 shows the "
            "traceback)")
