"""A frame's failure as its `failed` result (one frame's error recorded, the sweep going on), and an error as the one
line that result and a lane's error carry."""

from __future__ import annotations

from cp_debug.sweep.records import FrameResult


def or_failed(index: int, token: str, fn, *args):
    """`fn(*args)`, or where it raises (but for Ctrl-C, exits and memory) the frame's `failed` result with its
    one-line reason: one frame's failure is recorded, the sweep goes on."""
    try:
        return fn(*args)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - see the docstring
        return FrameResult(index, token, "failed", one_line(err))


def one_line(err: BaseException) -> str:
    """The error's type and the first line of its message (300 characters at most)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__
