"""Third-party warnings off the user's terminal and into the report.

What the user sees is cp_debug's own output. Libraries speak three ways: Python `warnings` (torch's, the
exporter's), Python `logging` (ONNX Runtime's quantizer logs on the root logger) and text written straight to
file descriptor 2 (ONNX Runtime's C++ log: `[W:onnxruntime:, graph.cc …]`, the CUDA EP's fallback notes).
`ThirdParty` catches all three around a command: warnings and log records are recorded, and fd 2 is pointed
at a temporary file whose text is read back; our own progress goes to a duplicate of the original stderr.
Each distinct message is kept once, with its count (`ThirdPartyWarning`), for the report's warnings.
With `verbose`, fd 2 is left alone (ONNX Runtime's log shows as it comes) and the Python warnings and log
records are printed as they come as well as recorded.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from typing import TextIO

from cp_debug.cli.common.gs_log import route, unroute
from cp_debug.cli.common.options import Verbose  # noqa: F401 - its old home; commands take it from cli.common.options
from cp_debug.cli.common.pipe import guarded
from cp_debug.errors import CpDebugWarning, plain

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? ")  # ORT's log line prefix
_QUOTED = re.compile(r"'[^']*'")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_ID = re.compile(r"\bid: \d+")  # a Python object's id (onnx-graphsurgeon's "[id: 1398…] Variable (name)")


@dataclass(frozen=True)
class ThirdPartyWarning:
    """One distinct third-party message: where it came from, its first text, how often it came."""

    source: str  # "python warning", "logging <logger>", "onnxruntime (C++ log)", "stderr"
    message: str
    count: int = 1

    def to_json(self) -> dict:
        return {"source": self.source, "message": self.message, "count": self.count}


class ThirdParty:
    """Context manager capturing third-party warnings for one command; see the module docstring.

    `terminal` is the stream for our own stderr output (progress) while the capture runs; `warnings()` is the
    deduplicated list so far (callable inside the block, e.g. just before the report is written).
    """

    def __init__(self, verbose: bool = False):
        self.verbose = verbose
        self.terminal: TextIO = sys.stderr
        self._seen: dict[tuple[str, str], list] = {}  # (source, key) -> [first message, count]
        self._order: list[tuple[str, str]] = []
        self._records: list = []
        self._cw = None
        self._handler: logging.Handler | None = None
        self._saved_fd: int | None = None
        self._tmp = None
        self._own_terminal = False
        self._levels: dict[str, int] = {}
        self._gs = None
        self._own: list[str] = []  # cp_debug's own notes raised as warnings (`CpDebugWarning`), in order, once each

    # -- the context -----------------------------------------------------------------------------------------
    def __enter__(self) -> "ThirdParty":
        self._cw = warnings.catch_warnings()
        self._cw.__enter__()
        warnings.simplefilter("always")  # every occurrence reaches showwarning: the count is honest …
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)  # … of what Python shows by default
        warnings.showwarning = self._on_warning
        self._handler = _Handler(self)
        root = logging.getLogger()
        root.addHandler(self._handler)
        for name in ("onnxruntime", "polygraphy"):  # in case a library turned propagation off
            lg = logging.getLogger(name)
            if not lg.propagate:
                lg.addHandler(self._handler)
        self._gs = route()  # onnx-graphsurgeon prints its warnings to stdout: into logging instead (_gs_log.py)
        if not self.verbose:
            self._redirect_fd2()
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self._restore_fd2()
        finally:
            root = logging.getLogger()
            root.removeHandler(self._handler)
            for name in ("onnxruntime", "polygraphy"):
                logging.getLogger(name).removeHandler(self._handler)
            unroute(self._gs)
            self._cw.__exit__(*exc)
        return False

    # -- what was caught ---------------------------------------------------------------------------------------
    def warnings(self) -> list[ThirdPartyWarning]:
        self._read_fd2()
        return [ThirdPartyWarning(src, msg, n) for (src, _), (msg, n) in
                ((k, self._seen[k]) for k in self._order)]

    def print_count(self, console, where: str | None = "the report's warnings") -> None:
        """The one line for the end of a command's output (nothing when nothing was caught)."""
        from cp_debug.report._format import third_party_line

        line = third_party_line([w.to_json() for w in self.warnings()], verbose=self.verbose, where=where)
        if line:
            console.print(f"[dim]{line}[/dim]", highlight=False, soft_wrap=True)

    def add(self, source: str, message: str) -> None:
        message = plain(message).strip()  # no terminal escapes in the report (or in rich's output of it)
        if not message:
            return
        key = (source, _QUOTED.sub("'…'", _ID.sub("id: …", _HEX.sub("0x…", message))))
        if key in self._seen:
            self._seen[key][1] += 1
        else:
            self._seen[key] = [message, 1]
            self._order.append(key)

    # -- Python warnings and logging -------------------------------------------------------------------------
    def own(self, beside=()) -> list[str]:
        """cp_debug's own notes that came as Python warnings (`errors.CpDebugWarning`), each once and none already
        in `beside` (a report's own warnings): the report's own warnings, not third-party ones."""
        return [w for w in self._own if w not in beside]

    def _on_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        if isinstance(category, type) and issubclass(category, CpDebugWarning):
            text = plain(str(message)).strip()
            if text and text not in self._own:
                self._own.append(text)
            return
        where = f"{os.path.basename(filename)}:{lineno}" if filename else "?"
        self.add("python warning", f"{category.__name__}: {str(message).strip()} ({where})")
        if self.verbose:
            self.terminal.write(warnings.formatwarning(message, category, filename, lineno, line))
            self.terminal.flush()

    # -- fd 2 --------------------------------------------------------------------------------------------------
    def _redirect_fd2(self) -> None:
        try:
            for s in (sys.stdout, sys.stderr):
                s.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return self._quiet_ort_instead()
        self._saved_fd = saved
        self._tmp = tempfile.TemporaryFile(prefix="cpdebug-stderr-")
        self._read_at = 0
        os.dup2(self._tmp.fileno(), 2)
        if _is_fd2(sys.stderr):  # our own stderr output goes to the real stderr, through a duplicate of it
            self.terminal = guarded(os.fdopen(os.dup(saved), "w", buffering=1,  # a closed pipe: quiet (common/pipe.py)
                                              encoding=sys.stderr.encoding or "utf-8", errors="replace"))
            self._own_terminal = True

    def _restore_fd2(self) -> None:
        if self._saved_fd is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        self._read_fd2()
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None
        self._tmp.close()
        if self._own_terminal:
            self.terminal.close()
            self.terminal = sys.stderr
            self._own_terminal = False

    def _read_fd2(self) -> None:
        if self._saved_fd is None or self._tmp is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        size = os.fstat(self._tmp.fileno()).st_size
        if size <= self._read_at:
            return
        data = os.pread(self._tmp.fileno(), size - self._read_at, self._read_at)
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        if end == 0:
            return
        self._read_at += end
        for raw in data[:end].decode("utf-8", errors="replace").splitlines():
            text = _STAMP.sub("", plain(raw)).strip()
            if text:
                self.add("onnxruntime (C++ log)" if ":onnxruntime:" in text else "stderr", text)

    def _quiet_ort_instead(self) -> None:
        """No fd 2 to redirect (an embedding host): at least keep ONNX Runtime's C++ warnings off the terminal."""
        try:
            import onnxruntime as ort

            ort.set_default_logger_severity(3)
        except Exception:  # noqa: BLE001 - onnxruntime missing or too old: nothing to quiet
            pass


class _Handler(logging.Handler):
    def __init__(self, owner: ThirdParty):
        super().__init__(logging.WARNING)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed third-party log call must not end the run
            msg = str(record.msg)
        self.owner.add(f"logging {record.name}", f"{record.levelname}: {msg}")
        if self.owner.verbose:
            self.owner.terminal.write(f"{record.levelname}:{record.name}:{msg}\n")
            self.owner.terminal.flush()


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False
