"""A frame's failure as its `failed` result (one frame's error recorded, the sweep going on), and an error as the one
line that result and a lane's error carry."""

from __future__ import annotations

from cp_debug.errors import BackendUnavailableError
from cp_debug.sweep.records import FrameResult


def or_failed(index: int, token: str, fn, *args):
    """`fn(*args)`, or where it raises the frame's `failed` result with its one-line reason: one frame's failure is
    recorded, the sweep goes on. Ctrl-C, exits, memory and a backend that cannot run here at all (a library missing,
    TensorRT-RTX refusing this GPU: every frame would fail alike) end the sweep instead."""
    try:
        return fn(*args)
    except (KeyboardInterrupt, SystemExit, MemoryError, BackendUnavailableError):
        raise
    except Exception as err:  # noqa: BLE001 - see the docstring
        return FrameResult(index, token, "failed", one_line(err))


def one_line(err: BaseException) -> str:
    """The error's type and the first line of its message (300 characters at most)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__
