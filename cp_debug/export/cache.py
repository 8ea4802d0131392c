"""Exported ONNX graphs kept on disk between processes, found again by what made them.

A second bisect or sweep of the same model should not export it again: exporting awml-base's backbone/neck/head
takes seconds and loads torch's ONNX exporter. `export_cached` keys an export by a content hash of everything its
graph depends on — the module's structure and the source files of its classes, every parameter and buffer (bytes),
the example inputs (bytes: a trace can freeze a data-dependent branch), the export's own arguments (names, dynamic
axes, exporter, opset), the caller's extra settings (the model config; a `--torch` file's own code) and the
versions of cp_debug, torch and onnx — and keeps the graph as `KEY.onnx` beside `KEY.json` (the exporter, its
warnings, what else it said: `said.py`), each written whole (temp file + rename), the JSON last: two processes
exporting at once both write the same files, and a reader never sees half of one.

Where: `exports` in cp_debug's cache folder (`files.cache_dir`: `$CPDEBUG_CACHE_DIR`, default `~/.cache/cp_debug`,
`$XDG_CACHE_HOME` respected). Off with `CPDEBUG_NO_CACHE=1` (`--no-cache`). Bounded by `files.prune_cache`: past
`CPDEBUG_CACHE_MAX_MB` (default 2048) the least recently used entries go. A cache that cannot be written (read-only
home) is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from cp_debug.errors import plain
from cp_debug.export.said import Said, say_again
from cp_debug.export.torch_export import ExportResult, ExportWarning, export_module, weight_bytes
from cp_debug.files import CACHE_ENV, NO_CACHE_ENV, cache_dir, cache_limit
from cp_debug.graph.stored import load_entry, store_entry

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

    from cp_debug.export.dynamic import DynamicAxes

__all__ = ["CACHE_ENV", "NO_CACHE_ENV", "digests_kept", "export_cached", "export_key", "file_export_cached",
           "weights_digest"]

# /2: what the export said (`said.Said`: log records, fd 2) is kept and said again on a hit
SCHEMA = "cp_debug.export_cache/2"
FILE_SCHEMA = "cp_debug.file_export_cache/2"  # a deployment file's graph as torch.onnx.export wrote it


def export_cached(module, example_inputs: tuple, input_names, output_names, *, dynamic_axes=None,
                  exporter: str = "auto", opset: int = 17, extra: Any = None,
                  dynamic: "DynamicAxes | None" = None) -> ExportResult:
    """`export_module(...)` through the cache: the stored graph when one was made from the same module, weights,
    example inputs and settings (`result.cache == "hit"`), else a fresh export, stored (`"stored"`). `extra`: what
    else the graph depends on (the model config; a `--torch` file's code: `bisect.subjects.loaders.user_code`), as its
    repr. `dynamic`: the inputs' dynamic axes (`export/dynamic.py`), keyed by their axes, names and ranges (none: the
    key of a static export, as before). What the export said beside its warnings (log records: `said.Said`) is said
    again on a hit. With the cache off, `export_module` alone."""
    folder = cache_dir("exports")

    def fresh() -> ExportResult:
        return export_module(module, example_inputs, input_names, output_names, dynamic_axes=dynamic_axes,
                             exporter=exporter, opset=opset, dynamic=dynamic)

    if folder is None or weight_bytes(module) > cache_limit():  # it could not be kept: no key hashed (4 s at 2 GB)
        return fresh()
    key = export_key(module, example_inputs, {
        "input_names": list(input_names), "output_names": list(output_names),
        "dynamic_axes": dynamic_axes, "exporter": exporter, "opset": opset, "extra": repr(extra),
        **({"dynamic": dynamic.key()} if dynamic else {})})
    found = _load(folder, key)
    if found is not None:
        return found
    with Said() as said:
        result = fresh()
    stored = _store(folder, key, result, said.to_json())
    return ExportResult(result.model, result.exporter, result.warnings, result.fallback_reason, result.notes,
                        cache="stored" if stored else None)


def file_export_cached(module, example_inputs: tuple, settings: dict,
                       export: "Callable[[], onnx.ModelProto]") -> "onnx.ModelProto":
    """A deployment file's graph (`recipes/centerpoint/export.export_stage`: torch.onnx.export as AWML runs it, not
    `export_module`'s cleaned graph) through the cache: `export()` makes it afresh; keyed as `export_cached` keys
    (module, weights, example inputs, sources, versions) with `settings` (names, axes, opset, folding, the writer's
    own source). What the export said (its warnings, log records: `said.Said`) is stored with it and said again on
    a hit, so that what a run says of them (its report's third-party warnings, their counts) is the same either
    way. Cache off: `export()`."""
    folder = cache_dir("exports")
    if folder is None:
        return export()
    key = export_key(module, example_inputs, {"kind": FILE_SCHEMA, **settings})
    found = load_entry(folder, key, FILE_SCHEMA)
    if found is not None:
        model, meta = found
        say_again(meta["said"])
        return model
    with Said() as said:
        model = export()
    store_entry(folder, key, model, {"schema": FILE_SCHEMA, "created": time.time(), "said": said.to_json()})
    return model


def export_key(module, example_inputs: Iterable, settings: dict, *, schema: str = SCHEMA,
               code: Iterable[str] | None = None, start: "hashlib._Hash | None" = None, fresh: bool = False) -> str:
    """The content hash an export is stored under (hex sha256). Another entry made by running a module on example
    inputs is keyed here too, with its own `schema` and `code` (the files of the code that makes it, in place of
    the exporter's): the module trace (`probes/trace_cache.py`). `start`: `key_start(module, settings, schema=,
    code=)` of the same arguments, hashed once for several inputs (the inputs come last: the key is the same).
    `fresh`: the weights hashed again, whatever `weights_digest` holds (see there)."""
    h = (start or key_start(module, settings, schema=schema, code=code, fresh=fresh)).copy()
    for i, x in enumerate(example_inputs):
        _add_tensor(h, f"input{i}", x)
    return h.hexdigest()


def key_start(module, settings: dict, *, schema: str = SCHEMA, code: Iterable[str] | None = None,
              fresh: bool = False) -> "hashlib._Hash":
    """`export_key`'s hash up to the example inputs: the schema, the versions, `settings`, the module's structure,
    the plain attributes of its submodules, the source files of their classes and of `code`, every parameter and
    buffer (their digest: `weights_digest`, hashed again where `fresh`). Valid while the module is unchanged: a
    forward pass may change it (an observer), so a caller that runs one makes it again (`trace_cache.traced`)."""
    import onnx
    import torch

    import cp_debug

    h = hashlib.sha256()
    _add(h, "schema", schema)
    _add(h, "versions", json.dumps([cp_debug.__version__, torch.__version__, onnx.__version__]))
    _add(h, "settings", json.dumps(settings, sort_keys=True, default=str))
    _add(h, "structure", repr(module))
    for qualified, m in module.named_modules():  # plain attributes too: a quantizer's on/off flag, an eps, a mode
        _add(h, "attributes", f"{qualified}|" + json.dumps(
            sorted((k, v) for k, v in vars(m).items() if _plain(v)), default=str))
    for path in _source_files(module, code):
        _add(h, "source", path.read_bytes())
    _add(h, "weights", weights_digest(module, fresh=fresh))
    return h


# within `digests_kept()`, on this thread: module -> (the stamp of its weights, their digest)
_KEPT = threading.local()


@contextmanager
def digests_kept() -> Iterator[None]:
    """Within: `weights_digest` kept for each module while its weights are unchanged, so that one bisect's export key
    and module trace key hash its weights once (a 136 M model's 547 MB: 0.5 CPU s, 2 s of wall under load, a hash on
    the CPU machine). Only for the span of one command: a change made through `.data` is not counted (see
    `weights_digest`), and a user's code may make one between two calls of the library."""
    outer = getattr(_KEPT, "digests", None)
    if outer is None:
        _KEPT.digests = weakref.WeakKeyDictionary()
    try:
        yield
    finally:
        if outer is None:
            _KEPT.digests = None


def weights_digest(module, *, fresh: bool = False) -> bytes:
    """The sha256 of every parameter and buffer of `module` (name, dtype, shape, bytes). Within `digests_kept()`,
    kept for the module while each tensor is the same storage at the same version: torch counts every in-place change
    of a tensor (`_version`), and a tensor replaced is another storage; a change made through `.data` is not counted,
    so `fresh` hashes again whatever is kept (`trace_cache.traced`'s check after its pass, which must see any change
    the pass made)."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    digests = getattr(_KEPT, "digests", None)
    stamp = None if digests is None else tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape), str(t.device))
                                               for name, t in tensors)
    kept = None if digests is None or fresh else digests.get(module)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    h = hashlib.sha256()
    for name, t in tensors:
        _add_tensor(h, name, t)
    digest = h.digest()
    if digests is not None:
        digests[module] = (stamp, digest)
    return digest


def _add(h, tag: str, data: "bytes | str | np.ndarray") -> None:
    """`data` into `h` under `tag`, with its length; an array's bytes read in place (no copy)."""
    import numpy as np

    raw = data.encode() if isinstance(data, str) else data
    h.update(f"{tag}:{raw.nbytes if isinstance(raw, np.ndarray) else len(raw)}:".encode())
    h.update(raw)


def _add_tensor(h, name: str, t) -> None:
    """A tensor's (or array's) name, dtype, shape and bytes into `h`."""
    import numpy as np
    import torch

    arr = t.detach().cpu().contiguous() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
    _add(h, "tensor", f"{name}|{arr.dtype}|{tuple(arr.shape)}")
    if isinstance(arr, torch.Tensor):
        arr = arr.view(torch.uint8) if arr.dim() else arr.reshape(1).view(torch.uint8)
        _add(h, "bytes", arr.numpy().reshape(-1))
    else:
        _add(h, "bytes", arr.tobytes() if arr.dtype.hasobject else arr.reshape(-1).view(np.uint8))


def _plain(v) -> bool:
    """A value the key can hold as text: None, a bool, number or string, or a tuple/list of them."""
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _source_files(module, code: Iterable[str] | None = None) -> list[Path]:
    """The files defining the classes of `module`'s submodules (and their bases below torch.nn.Module), and those of
    the code that makes the entry (`code`; by default the exporter's: torch_export.py, graph/model.py's clean-up):
    an edited forward or exporter in an editable install changes the key even before the version does."""
    import torch

    from cp_debug.graph import model as graph_model

    if code is None:
        code = (__file__, inspect.getsourcefile(export_module), inspect.getsourcefile(graph_model))
    seen: dict[str, Path] = {p: Path(p) for p in code if p}
    for m in module.modules():
        for cls in type(m).__mro__:
            if cls is torch.nn.Module or cls is object:
                break
            try:
                path = inspect.getsourcefile(cls)
            except (TypeError, OSError):
                path = None
            if path and path not in seen and os.path.isfile(path):
                seen[path] = Path(path)
    return [seen[p] for p in sorted(seen)]


def _load(folder: Path, key: str) -> ExportResult | None:
    found = load_entry(folder, key, SCHEMA)
    if found is None:
        return None
    model, meta = found
    say_again(meta["said"])
    warns = tuple(ExportWarning(w["category"], w["message"], w["filename"], w["lineno"], tuple(w["modules"]))
                  for w in meta.get("warnings", []))
    reason = meta.get("fallback_reason")  # stored before escape sequences were removed: plain now
    return ExportResult(model, meta["exporter"], warns, reason and plain(reason), tuple(meta.get("notes", [])),
                        cache="hit")


def _store(folder: Path, key: str, result: ExportResult, said: dict) -> bool:
    """Write the entry (graph first, its JSON last), then prune; False when the folder cannot be written."""
    meta = {"schema": SCHEMA, "exporter": result.exporter, "fallback_reason": result.fallback_reason, "said": said,
            "notes": list(result.notes), "created": time.time(),
            "warnings": [{"category": w.category, "message": w.message, "filename": w.filename, "lineno": w.lineno,
                          "modules": list(w.modules)} for w in result.warnings]}
    return store_entry(folder, key, result.model, meta)
