"""Files written whole or not at all, for every floor that writes one.

`write_atomic` writes through a temporary file in the target's folder (flushed and fsync'ed), gives it the
mode a plain `open()` would (0666 less the umask: temp files are born 0600) and `os.replace`s it onto the
target, so a reader never sees half a file and a failed write leaves nothing behind. An `OSError` becomes one
`BadInputError` line naming the file. It sits on the ground floor so that `data`, `models`, `report` and `cli`
share one writer.

`write_json` is the one JSON writer (reports, sweep.json, fix.json, shards, PTQ dirs, logs): strict JSON through
`json_text`, where a non-finite float is the string "nan" / "inf" / "-inf" (never a NaN token other readers
refuse) and a typed value (a dataclass with `to_json()`) is serialized by its own `to_json()`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cp_debug.errors import BadInputError

_UMASK: int | None = None
CACHE_ENV = "CPDEBUG_CACHE_DIR"
NO_CACHE_ENV = "CPDEBUG_NO_CACHE"
MAX_MB_ENV = "CPDEBUG_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048


def user_cache_dir() -> Path:
    """Where cp_debug keeps files between runs (exported graphs, random weights, TensorRT engines):
    `$CPDEBUG_CACHE_DIR`, else `$XDG_CACHE_HOME/cp_debug`, else `~/.cache/cp_debug`."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cp_debug"


def cache_dir(kind: str) -> Path | None:
    """The cache folder of one kind of entry (`exports`, `weights`), or None when `CPDEBUG_NO_CACHE` is set to a
    true value (1, true, yes, on; `--no-cache`). Entries are written whole (`write_atomic`) and bounded by
    `prune_cache`; a folder that cannot be written is the caller's to skip, never an error."""
    if os.environ.get(NO_CACHE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    return user_cache_dir() / kind


def prune_cache(folder: Path, max_bytes: int | None = None) -> list[str]:
    """Delete the least recently used entries of `folder` (files sharing a stem: `KEY.onnx` + `KEY.json`) until they
    take at most `max_bytes` (default `CPDEBUG_CACHE_MAX_MB`, 2048 MiB); the stems deleted. Another writer's temp
    file (a dot name) left for more than an hour goes too."""
    return _prune(folder, cache_limit() if max_bytes is None else max_bytes)[0]


def prune_after_write(folder: Path, written: int) -> None:
    """`prune_cache(folder)` where the folder may have passed its limit: scanned at this process's first write into
    it, then again only once what the process wrote since (`written` bytes a call) takes the size it last saw past
    the limit. A scan stats every file: after every write, the 3,492 entries of a 1,746-node graph's segment
    conversions cost ~90 s of stat calls on the CPU machine. Another process's writes are seen at its own scans."""
    limit = cache_limit()
    key = str(folder)
    with _PRUNE_LOCK:
        known = _KNOWN_SIZE.get(key)
        if known is not None and known + written <= limit:
            _KNOWN_SIZE[key] = known + written
            return
        _KNOWN_SIZE[key] = _prune(folder, limit)[1]


_PRUNE_LOCK = threading.Lock()
_KNOWN_SIZE: dict[str, int] = {}


def _prune(folder: Path, max_bytes: int) -> tuple[list[str], int]:
    """(the stems `prune_cache` deleted, the bytes left in the folder)."""
    import time

    now = time.time()
    entries: dict[str, list[tuple[Path, os.stat_result]]] = {}
    try:
        listing = list(Path(folder).iterdir())
    except OSError:
        return [], 0
    for p in listing:
        try:
            st = p.stat()
        except OSError:
            continue
        if p.name.startswith("."):
            if now - st.st_mtime > 3600:
                _unlink(p)
            continue
        entries.setdefault(p.name.split(".", 1)[0], []).append((p, st))
    total = sum(st.st_size for files in entries.values() for _, st in files)
    gone = []
    for key in sorted(entries, key=lambda k: max(st.st_mtime for _, st in entries[k])):
        if total <= max_bytes:
            break
        for p, st in sorted(entries[key], key=lambda e: e[0].suffix != ".json"):  # the JSON, a commit mark, first
            _unlink(p)
            total -= st.st_size
        gone.append(key)
    return gone, total


def cache_limit() -> int:
    """The bytes one cache folder may hold (`CPDEBUG_CACHE_MAX_MB`, default 2048 MiB)."""
    raw = os.environ.get(MAX_MB_ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        raise BadInputError(f"{MAX_MB_ENV}={raw!r}: give a size in MiB (e.g. 2048)") from None
    return int(max(mb, 0) * (1 << 20))


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, parents: bool = False,
                 durable: bool = True) -> Path:
    """Write `path` with `write(f)` on a binary file object (e.g. `torch.save(obj, f)`); see the module docstring.
    `parents`: create missing folders first. `durable=False`: not synced to the disk first (a file of the process's
    own that goes when it ends: the weights folder's, 0.9 s of 122 syncs in a 136 M model's bisect)."""
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
            if durable:
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


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2, parents: bool = False) -> Path:
    """Write `obj` as strict JSON (`json_text`) and a newline, whole or not at all; returns the path written."""
    return write_text_atomic(path, json_text(obj, indent) + "\n", parents=parents)


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), read a MiB at a time."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_text(obj, indent: int | None = 2) -> str:
    """Strict JSON of `obj` (no NaN/Infinity tokens; see `jsonable`), non-ASCII text kept as it is."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def jsonable(obj):
    """A copy of `obj` that strict JSON can hold: typed values (their `to_json()`), numpy scalars/arrays, tuples,
    paths and non-finite floats (the strings "nan", "inf", "-inf"); anything else unknown becomes its str()."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and callable(getattr(obj, "to_json", None)):
        return jsonable(obj.to_json())
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist):
        return jsonable(tolist())
    return str(obj)


def os_reason(e: BaseException) -> str:
    """An OS error's reason as the tail of one line ("no such file or directory")."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[:1].lower() + e.strerror[1:]
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def tree_stamp(root: str | Path, suffix: str = "") -> tuple[tuple[str, int, int], ...]:
    """Every file under `root` whose name ends with `suffix` (`__pycache__` folders left out), as (path relative to
    `root`, size, modification time in ns), in a fixed order: what changes when any of them is written again. A file
    gone while it is listed is left out."""
    found = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if s != "__pycache__")
        for name in sorted(files):
            if not name.endswith(suffix):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return tuple(found)


def umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK
