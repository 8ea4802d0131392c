"""FP16 conversions read back from cp_debug's cache folder (`fp16`) instead of converted again: the entry's key, its
schema and the cached path of `precision.fp16.convert_to_fp16`."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Iterable

from cp_debug.errors import CpDebugWarning
from cp_debug.precision.fp16 import convert_quietly

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def convert_to_fp16_cached(model: "onnx.ModelProto", *, keep_fp32_nodes: Iterable[str] = (),
                           keep_fp32_op_types: Iterable[str] = (), keep_io_types: bool = True) -> "onnx.ModelProto":
    """`convert_to_fp16` through cp_debug's cache folder (`fp16`): a graph this code converted before with the same
    settings is read back (its warnings said again) instead of converted — each bisect converts its stages and
    its local-error segments again otherwise (on the H100 host, ~0.45 s for awml-base's backbone). Keyed by a
    content hash of the graph's bytes, the settings, the source of this module, `precision/fp16.py`,
    `precision/fp16_keep.py` and `graph/model.py` and the versions of cp_debug, onnx and onnx-graphsurgeon; each
    entry written whole (`KEY.onnx`, then `KEY.json`), bounded like the export cache (`files.prune_cache`). Off
    with `CPDEBUG_NO_CACHE`; a folder that cannot be written, or a graph whose weights are kept in files
    (`onnx_files.keep`), is converted without it."""
    from cp_debug.files import cache_dir
    from cp_debug.graph.onnx_files import encoded
    from cp_debug.graph.stored import load_entry, store_entry

    keep_nodes, keep_ops = sorted(set(keep_fp32_nodes)), sorted(set(keep_fp32_op_types))
    folder = cache_dir("fp16")
    data = encoded(model) if folder is not None else None  # the key is made from them
    key = None if data is None else _cache_key(data, {"keep_fp32_nodes": keep_nodes, "keep_fp32_op_types": keep_ops,
                                                      "keep_io_types": bool(keep_io_types)})
    found = None if key is None else load_entry(folder, key, _CACHE_SCHEMA)
    if found is not None:
        converted, said = found[0], [str(t) for t in found[1].get("warnings", [])]
    else:  # no key: weights in files (`graph/weight_store.py`), their FP16 copies made once a process
        converted, said = convert_quietly(model, keep_nodes, keep_ops, keep_io_types)
        if key is not None:
            store_entry(folder, key, converted, {"schema": _CACHE_SCHEMA, "warnings": said})
    for text in said:
        warnings.warn(text, CpDebugWarning, stacklevel=2)
    return converted


_CACHE_SCHEMA = "cp_debug.fp16_cache/1"


def _cache_key(model: "onnx.ModelProto | bytes", settings: dict) -> str:
    import onnx
    import onnx_graphsurgeon as gs

    import cp_debug
    from cp_debug.graph import model as graph_model
    from cp_debug.graph.stored import entry_key
    from cp_debug.precision import fp16, fp16_keep

    return entry_key(_CACHE_SCHEMA, [cp_debug.__version__, onnx.__version__, gs.__version__], settings,
                     [__file__, fp16.__file__, fp16_keep.__file__, graph_model.__file__], model)
