"""Files written whole or not at all, for every floor that writes one.

`write_atomic` writes through a temporary file in the target's folder (flushed and fsync'ed), gives it the
mode a plain `open()` would (0666 less the umask: temp files are born 0600) and `os.replace`s it onto the
target, so a reader never sees half a file and a failed write leaves nothing behind. An `OSError` becomes one
`BadInputError` line naming the file. It sits on the ground floor so that `data`, `models`, `report` and `cli`
share one writer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cp_debug.errors import BadInputError

_UMASK: int | None = None


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, parents: bool = False) -> Path:
    """Write `path` with `write(f)` on a binary file object (e.g. `torch.save(obj, f)`); see the module docstring.
    `parents`: create missing folders first."""
    p = Path(path)
    tmp = None
    try:
        if p.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        if parents:
            p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        raise BadInputError(f"cannot write {p}: {os_reason(e)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return p


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, parents: bool = False) -> Path:
    return write_atomic(path, lambda f: f.write(data), parents=parents)


def write_text_atomic(path: str | os.PathLike, text: str, *, parents: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), parents=parents)


def os_reason(e: BaseException) -> str:
    """An OS error's reason as the tail of one line ("no such file or directory")."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[:1].lower() + e.strerror[1:]
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK
