"""What an export said on the way, kept with a cached graph and said again when the graph is read back.

Libraries speak three ways (`cli/common/quiet.ThirdParty` catches all three for a run's report): Python warnings, log
records and text on file descriptor 2. An export speaks all three — onnxscript's optimizer logs "Skipping constant
folding for op Split …" (10 records for the zoo's DETR), a user's forward that logs on the root logger logs again
when the exporter runs it, the TorchScript exporter's C++ writes to fd 2 — and a graph read from the cache runs no
export: `Said` records what the export said while passing it on as it comes, and `say_again` says it once more on a
hit, in the same order (log records, then Python warnings, then fd 2's text), so that a run's third-party warnings
and their counts are the same whether its graph was exported or read back.

Only the exporting thread's log records are kept (another thread's are no part of the export); fd 2 is captured only
where it is no terminal (a terminal may carry a spinner drawn by another thread: rich's Live, `cli/common/output.step`).
Fd 2 is the process's: one `Said` at a time in the process (`SPEAKING`, which a thread may take again inside its
own), else two threads' blocks would point it at each other's files and leave it at a closed one.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import threading
import warnings

__all__ = ["SPEAKING", "Said", "say_again"]

SPEAKING = threading.RLock()  # held by the thread inside a `Said` (`ort/ort_kept.py` takes it first, with a limit)


class Said:
    """Context manager: what the block said (`to_json()`), passed on as it would have gone without it — log records
    as they come, Python warnings and fd 2's text when the block ends. `fd2_only`: fd 2's text alone (the Python
    warnings and log records of the block are left to go as they go: `warnings.catch_warnings` is the process's, and
    a block on one thread would catch, and on leaving put back, another thread's)."""

    def __init__(self, fd2_only: bool = False):
        self.fd2_only = fd2_only
        self.log: list[dict] = []
        self.warned: list[dict] = []
        self.stderr = ""
        self._handler = _Keep(self.log, threading.get_ident())
        self._caught: list | None = None
        self._cw = None
        self._fd2: tuple[int, object] | None = None
        self._fd1: tuple[int, object] | None = None

    def __enter__(self) -> "Said":
        SPEAKING.acquire()
        if not self.fd2_only:
            logging.getLogger().addHandler(self._handler)
            self._cw = warnings.catch_warnings(record=True)
            self._caught = self._cw.__enter__()
        # the TorchScript exporter's C++ writes to fd 1 too: the IR graph of a failed export, 155 lines of it for
        # PESTO's complex CQT, on the terminal before "ONNX export failed"; said on fd 2 with the rest of its text
        self._fd1 = _capture_fd(1)
        self._fd2 = _capture_fd()
        return self

    @property
    def heard_fd2(self) -> bool:
        """Whether fd 2 was captured (not where it is a terminal)."""
        return self._fd2 is not None

    def __exit__(self, *exc) -> bool:
        try:
            self.stderr = _release_fd(self._fd2)
            self.stderr += _release_fd(self._fd1, 1)
        finally:
            if not self.fd2_only:
                self._cw.__exit__(*exc)
                logging.getLogger().removeHandler(self._handler)
            SPEAKING.release()
        for w in self._caught or ():  # said on, as they came, to whoever listens (the CLI's ThirdParty)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.warned = [{"category": f"{w.category.__module__}:{w.category.__qualname__}", "message": str(w.message),
                        "filename": w.filename, "lineno": w.lineno} for w in self._caught or ()]
        _write_fd2(self.stderr)
        return False

    def to_json(self) -> dict:
        return {"log": self.log, "warnings": self.warned, "stderr": self.stderr}


def say_again(said: dict) -> None:
    """Say what a `Said` recorded (`to_json()`, as stored beside a cached graph) once more, as it went then."""
    for r in said.get("log", []):
        logger = logging.getLogger(r["name"])
        if logger.isEnabledFor(r["levelno"]):
            logger.handle(logging.makeLogRecord(r))
    for w in said.get("warnings", []):
        warnings.warn_explicit(w["message"], _warning_class(w["category"]), w["filename"], w["lineno"])
    _write_fd2(said.get("stderr", ""))


class _Keep(logging.Handler):
    """On the root logger: keeps each record of thread `thread` that reaches it, and hands it to logging's last resort
    where it is the only handler the record found (as the record would have gone without it)."""

    def __init__(self, kept: list[dict], thread: int):
        super().__init__(logging.NOTSET)
        self.kept, self.thread = kept, thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed third-party log call: kept as it was given
            msg = str(record.msg)
        self.kept.append({"name": record.name, "msg": msg, "levelno": record.levelno,
                          "levelname": record.levelname, "pathname": record.pathname, "lineno": record.lineno,
                          "funcName": record.funcName, "module": record.module, "filename": record.filename})
        if not self._others(record) and logging.lastResort is not None \
                and record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(record)

    def _others(self, record: logging.LogRecord) -> bool:
        logger = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


def _capture_fd(fd: int = 2) -> tuple[int, object] | None:
    """File descriptor `fd` pointed at a temporary file (fd 2 only where it is no terminal); None where it cannot be."""
    try:
        if fd == 2 and os.isatty(2):
            return None
        for s in (sys.stdout, sys.stderr):
            s.flush()
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        return None
    tmp = tempfile.TemporaryFile(prefix="cpdebug-export-stderr-")
    os.dup2(tmp.fileno(), fd)
    return saved, tmp


def _release_fd(held: tuple[int, object] | None, fd: int = 2) -> str:
    if held is None:
        return ""
    saved, tmp = held
    try:
        for s in (sys.stdout, sys.stderr):
            s.flush()
    except (OSError, ValueError, AttributeError):
        pass
    os.dup2(saved, fd)
    os.close(saved)
    tmp.seek(0)
    text = tmp.read().decode("utf-8", errors="replace")
    tmp.close()
    return text


def _write_fd2(text: str) -> None:
    if text:
        try:
            os.write(2, text.encode())
        except OSError:
            pass


def _warning_class(name: str) -> type[Warning]:
    """The warning class stored as "module:qualname" (UserWarning where it cannot be found again)."""
    module, _, qualname = name.partition(":")
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError):
        return UserWarning
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning
