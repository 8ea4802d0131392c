"""An ONNX graph kept in a cache folder between processes: `KEY.onnx` beside `KEY.json` (what made it), each written
whole (temp file + rename), the JSON last, so a reader never sees half an entry. Used by the export cache
(`export/cache.py`) the FP16 conversion cache (`precision/fp16_cache.py`) and the INT8 one
(`precision/int8_cache.py`), keyed by `entry_key`; the folders are `files.cache_dir`'s and
bounded by `files.prune_cache`. An entry that is JSON alone (`KEY.json`: the module trace cache,
`probes/trace_cache.py`) is read and written by `load_json_entry` / `store_json_entry`, the same way."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx


def load_entry(folder: Path, key: str, schema: str) -> "tuple[onnx.ModelProto, dict] | None":
    """(graph, its JSON) of entry `key`, marked recently used; None where it is missing, of another schema, half
    pruned or damaged (the caller makes it again)."""
    import onnx

    from cp_debug.graph.onnx_files import data_file_name
    from cp_debug.graph.onnx_read import read_onnx

    meta_path, model_path = folder / f"{key}.json", folder / f"{key}.onnx"
    meta = _meta(meta_path, schema)
    if meta is None:
        return None
    data_path = model_path.with_name(data_file_name(model_path.name))
    try:
        if data_path.is_file():  # past 2 GiB: the weights beside the graph, registered where they lie
            model = read_onnx(model_path)
        else:
            model = onnx.load_model_from_string(model_path.read_bytes())
    except Exception:  # noqa: BLE001 - missing, half-pruned or damaged (protobuf DecodeError)
        return None
    _used(meta_path, model_path, *([data_path] if data_path.is_file() else []))
    return model, meta


def load_json_entry(folder: Path, key: str, schema: str) -> dict | None:
    """The JSON of a JSON-only entry `key`, marked recently used; None where it is missing, of another schema or
    damaged (the caller makes it again)."""
    path = folder / f"{key}.json"
    meta = _meta(path, schema)
    if meta is not None:
        _used(path)
    return meta


def _meta(path: Path, schema: str) -> dict | None:
    """An entry's JSON when it is there, whole and of `schema`; else None."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("schema") == schema else None


def store_entry(folder: Path, key: str, model: "onnx.ModelProto", meta: dict) -> bool:
    """Write entry `key` (the graph first, past 2 GiB with its weights as external data `KEY.onnx.data`; `meta`
    last: it must hold "schema"), then prune the folder; False when the folder cannot be written (read-only or
    full: the caller runs on without the cache) or the graph is larger than the whole cache may be."""
    from cp_debug.errors import BadInputError
    from cp_debug.files import cache_limit, prune_after_write, write_json
    from cp_debug.graph.onnx_files import holds_stored, save_onnx, total_nbytes

    if total_nbytes(model) > cache_limit():  # it would go at once, every other entry with it
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # past 2 GiB, or weights this process keeps in files: KEY.onnx.data beside it (read back without a copy)
        files = save_onnx(model, folder / f"{key}.onnx", external=holds_stored(model) or None)
        files.append(write_json(folder / f"{key}.json", meta, parents=True))
    except (BadInputError, OSError):
        return False
    prune_after_write(folder, sum(f.stat().st_size for f in files))
    return True


def store_json_entry(folder: Path, key: str, meta: dict) -> bool:
    """Write the JSON-only entry `key` whole (it must hold "schema"), then prune the folder; False when the folder
    cannot be written."""
    from cp_debug.errors import BadInputError
    from cp_debug.files import prune_after_write, write_json

    try:
        written = write_json(folder / f"{key}.json", meta, indent=None, parents=True)
    except (BadInputError, OSError):
        return False
    prune_after_write(folder, written.stat().st_size)
    return True


def _used(*paths: Path) -> None:
    """Mark an entry's files recently used: the pruning keeps them longest."""
    now = time.time()
    for p in paths:
        try:
            os.utime(p, (now, now))
        except OSError:
            pass


def entry_key(schema: str, versions: Sequence[str], settings: dict, sources: Iterable[str | Path],
              model: "onnx.ModelProto | bytes", feeds: "Sequence[Mapping[str, np.ndarray]]" = ()) -> str:
    """The content hash (hex sha256) an entry made from `model` is stored under: its schema, the versions and the
    settings that made it, the source files of the code that made it, the graph's bytes (`model` may be them:
    a caller that has them encodes nothing again) and, where a graph was made from data too (INT8 calibration),
    every feed's names, dtypes, shapes and bytes."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for part in (schema, json.dumps(list(versions)), json.dumps(settings, sort_keys=True)):
        h.update(part.encode() + b"\0")
    for source in sources:
        h.update(Path(source).read_bytes() + b"\0")
    if isinstance(model, bytes):
        h.update(model)
    else:
        from cp_debug.graph.onnx_files import update_digest

        update_digest(h, model)
    for feed in feeds:
        for name in sorted(feed):
            value = np.ascontiguousarray(feed[name])
            h.update(json.dumps([name, value.dtype.str, list(value.shape)]).encode() + b"\0")
            h.update(value.tobytes())
        h.update(b"\1")
    return h.hexdigest()
