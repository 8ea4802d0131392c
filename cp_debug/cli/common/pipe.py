"""A closed pipe ends a command quietly (`cpdebug … | head`), as a pipeline expects of git: no message, no traceback
file, exit 141 (`ExitCode.CLOSED_PIPE`: 128 + SIGPIPE, what a shell reports for a program that signal ended); 0
after a help page, which a reader may well stop reading.

`guard()` wraps `sys.stdout` and `sys.stderr` (and `_quiet.ThirdParty` its copy of the terminal) in `Guarded`: a
write to a pipe whose reader has gone is dropped instead of raised, the descriptor then points at /dev/null (native
code's writes too) and the command is noted as cut. The command goes on, so that what it writes to files (`--json`,
`--html`: written whole by `cp_debug.files`) is still written; `exit_code` then gives 141, unless the command wrote
a help page (its own code stands) or its code says more (70 a bug, 130 Ctrl-C).
"""

from __future__ import annotations

import os
import sys

from cp_debug.errors import ExitCode

_cut = False  # a write to stdout or stderr found no reader
_help = False  # the command wrote a help page


class Guarded:
    """A text stream whose writes to a closed pipe are dropped and noted (see the module's docstring); all else is
    the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def close(self) -> None:
        try:
            self._stream.close()
        except BrokenPipeError:
            note_cut()

    def _drop(self) -> None:
        """Noted as cut; the descriptor pointed at /dev/null, so that what is buffered and what follows go there."""
        note_cut()
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            os.dup2(null, self._stream.fileno())
        except (OSError, ValueError, AttributeError):  # a stream without a descriptor of its own, or closed
            pass
        finally:
            os.close(null)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guarded(stream):
    """`stream` in a `Guarded` (None and a guarded stream as they are)."""
    return stream if stream is None or isinstance(stream, Guarded) else Guarded(stream)


def guard() -> tuple:
    """Guard `sys.stdout` and `sys.stderr` for a program or one command, with a fresh record (nothing cut, no help
    page); returns the streams they were, for `unguard`."""
    global _cut, _help
    _cut = _help = False
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = guarded(sys.stdout), guarded(sys.stderr)
    return saved


def unguard(saved: tuple) -> None:
    sys.stdout, sys.stderr = saved


def note_cut() -> None:
    global _cut
    _cut = True


def help_shown() -> None:
    global _help
    _help = True


def flush() -> None:
    """Flush `sys.stdout` and `sys.stderr`: a closed pipe is noted (guarded or not), any other failure passed over
    (nothing is left to write to)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:
            note_cut()
        except (OSError, ValueError):
            pass


def exit_code(code: int) -> int:
    """`code`, or 141 where a write of the command found no reader; a help page, a bug (70) and Ctrl-C (130) keep
    their code."""
    if not _cut or _help or code in (ExitCode.INTERNAL, ExitCode.INTERRUPTED):
        return code
    return ExitCode.CLOSED_PIPE


def cut_short() -> int:
    """The exit code for a BrokenPipeError that reached the error mapping where standard output or error has no reader
    any more (`output_closed`): 141, 0 after a help page."""
    note_cut()
    return exit_code(ExitCode.OK)


def output_closed() -> bool:
    """Standard output or standard error is a pipe (or socket) whose reader has gone."""
    import select

    poll = select.poll()
    for fd in (1, 2):
        poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))
