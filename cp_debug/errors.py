"""One error hierarchy, `CpDebugError` (`BadInputError`, `BackendUnavailableError`, …), on the ground floor (floor 1):
the CLI prints `str(err)` as one line and exits with `err.exit_code`."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping


class ExitCode(enum.IntEnum):
    """Every exit code cpdebug gives, in one place (the README's exit-code table lists the same).

    A CI reads them as: 0 pass; 1 and 4 the numbers part (a local fault / beyond what the precision explains);
    5 an artifact was written but did not verify; 2 the input is unusable; 3 a backend is missing or failed;
    70 a bug of cp_debug (an uncaught exception: report it); 130 interrupted; 141 the output's reader went away.
    A verdict's word (`compare.noise.Outcome`, the same in the JSON, the tables and the JUnit files) gives its
    code: within_precision 0, degraded 4, diverged 1, inconclusive 6 (a sweep frame that failed: 1).
    """

    OK = 0  # within precision (or within tolerance, --tolerance-mode fixed); every check or gate passed
    DIVERGED = 1  # a local fault: a layer or frame far beyond its siblings, NaN/Inf, a shape or interface mix-up;
    #               also a gate the user set failed (eval/replay --max-map-drop, --min-match), fix found no set
    BAD_INPUT = 2  # a file, option or value cannot be used (nothing written)
    BACKEND = 3  # a requested backend is not available here, or failed building/running (its own message)
    DEGRADED = 4  # beyond the precision's expected noise, or detections change, without a local fault
    NOT_VERIFIED = 5  # fix: the artifact was written but its verification failed
    INCONCLUSIVE = 6  # the reference's own two runs differ beyond the candidate's budget: no verdict rests on it
    INTERNAL = 70  # an uncaught exception: a bug of cp_debug (sysexits' EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C
    CLOSED_PIPE = 141  # stdout or stderr was a pipe whose reader went away (`| head`): 128 + SIGPIPE, as for git


class CpDebugWarning(UserWarning):
    """A note of cp_debug's own raised as a Python warning, where a library call has no report to write it in
    (`precision.fp16.convert_to_fp16`: constants that overflow float16). The command line files it with the report's
    own warnings, never as a third-party one (`cli/common/quiet.ThirdParty.own`)."""


class CpDebugError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""

    exit_code = ExitCode.BAD_INPUT


class BadInputError(CpDebugError):
    """A file, shape, name, value or option the user gave cannot be used (exit 2)."""


class CheckpointError(BadInputError):
    """A checkpoint does not fit the model it is loaded into."""


class UserCodeError(BadInputError):
    """The user's own code raised (a `--torch` / `--model-factory` file: building the model, its forward on the
    example inputs or on theirs): exit 2, one line naming their file and line, the exception and its message."""

    @classmethod
    def of(cls, err: BaseException, doing: str = "") -> UserCodeError | None:
        """`err` as the user's error where its innermost frame of either side is in a file of the user's
        (`note_user_file`), e.g. `my_model.py:12 in build: FileNotFoundError: …`; None where cp_debug's own code
        (a hook, a dispatch mode) raised it, or no file of the user's is on the way: then it stays what it is."""
        tb, where = err.__traceback__, None
        while tb is not None:
            file = os.path.abspath(tb.tb_frame.f_code.co_filename)
            if file in _USER_FILES:
                where = f"{os.path.basename(file)}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name}"
            elif file.startswith(_PACKAGE):
                where = None  # cp_debug's own code ran after the user's: the user's code did not raise it
            tb = tb.tb_next
        if where is None:
            return None
        said = first_line(err) if str(err).strip() else "(no message)"
        doing = f" {doing}" if doing else ""
        return cls(f"{where}: {type(err).__name__}: {said} (your model's code raised{doing}; CPDEBUG_DEBUG=1 shows "
                   "the traceback)")


    @classmethod
    def in_model(cls, err: BaseException, names: Mapping[int, str], doing: str) -> UserCodeError | None:
        """`err` raised by the user's model called at the traceback's first frame (cp_debug's call), as their
        error: where a file of theirs raised it (`of`), or where no frame of cp_debug's own code (a probe hook, an
        emulated kernel) runs between that call and the raise — a library's module raising on the data, as an
        embedding given token ids beyond its vocabulary does. The line names the innermost module of the model on
        the way (`names`: id() of each module -> its qualified name). None otherwise: cp_debug's bug stays one."""
        user = cls.of(err, doing)
        if user is not None or err.__traceback__ is None:
            return user
        tb, module = err.__traceback__.tb_next, None
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE):
                return None
            this = tb.tb_frame.f_locals.get("self")
            if id(this) in names:
                module = f"{names[id(this)] or 'the model'} ({type(this).__name__})"
            tb = tb.tb_next
        if module is None:
            return None
        said = first_line(err) if str(err).strip() else "(no message)"
        return cls(f"{module} raised {doing}: {type(err).__name__}: {said} (the model's own code on these inputs: "
                   "check their values and shapes against what it takes; CPDEBUG_DEBUG=1 shows the traceback)")


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_USER_FILES: set[str] = set()  # the user's Python files cp_debug ran (`UserCodeError.of` looks for them)


def note_user_file(path: str | os.PathLike) -> None:
    """`path` is the user's code (a file `--torch FILE.py:FUNC` ran, or one it imported from beside itself): an
    exception raised from it is the user's error (`UserCodeError.of`), not a bug of cp_debug."""
    file = os.path.abspath(path)
    if not file.startswith(_PACKAGE):
        _USER_FILES.add(file)


class BackendUnavailableError(CpDebugError):
    """A requested backend cannot run on this machine (exit 3); the message says what to install."""

    exit_code = ExitCode.BACKEND


class BackendRuntimeError(CpDebugError):
    """A backend failed building or running a model it accepted (exit 3): a TensorRT engine build or inference
    error, with the backend's own message. Not the user's input, and not a bug of cp_debug."""

    exit_code = ExitCode.BACKEND


# terminal control sequences (colours, cursor moves, OSC titles and links) that third-party text carries
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain(text: str) -> str:
    """Third-party text without its terminal escape sequences (torch.export's coloured messages): what goes into a
    report, a warning or rich output, where a raw `\\x1b[96m` would show as `[96m`."""
    return _ANSI.sub("", text)


def debug_enabled() -> bool:
    """CPDEBUG_DEBUG=1: a traceback shown, and what a run would say in one line and go on past raised as it came."""
    return os.environ.get("CPDEBUG_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def first_line(err: BaseException, limit: int | None = 300) -> str:
    """The first line of a library's error message (at most `limit` characters, escape sequences removed), or its
    type's name where it says nothing: what a one-line error quotes of ONNX, ONNX Runtime, polygraphy or TensorRT."""
    text = plain(str(err)).strip().splitlines()
    return (text[0][:limit] if limit is not None else text[0]) if text else type(err).__name__
