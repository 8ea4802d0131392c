"""INT8 quantizations read back from cp_debug's cache folder (`int8`) instead of calibrated and quantized again.

A bisect quantizes each of its segments with ONNX Runtime's `quantize_static` (a calibration session, then the Q/DQ
rewrite): on the tiny preset 31 quantizations, about 6 of a bisect's 22 CPU seconds, all of them the same the next
time the same model is bisected with the same calibration data. The key is a content hash of the graph, of every
calibration feed (names, dtypes, shapes, bytes), of the settings, of this module's and `precision/int8.py`'s source
and of the versions of cp_debug, onnx and onnxruntime; the entry is the quantized graph (`KEY.onnx`) and its tensor
map and activation ranges (`KEY.json`), written whole and bounded like the export cache (`files.prune_cache`). Off
with `CPDEBUG_NO_CACHE`; a folder that cannot be written, or a graph over protobuf's 2 GB, quantizes without it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

from cp_debug.precision import int8
from cp_debug.precision.int8 import QuantizedModel

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

_CACHE_SCHEMA = "cp_debug.int8_cache/2"  # 2: a tensor read after its pair only where the pair alone reads it


def quantize_int8_cached(model: "onnx.ModelProto", calib_feeds: "Sequence[dict[str, np.ndarray]]", *,
                         exclude_nodes: Iterable[str] = (), method: str = "minmax") -> QuantizedModel:
    """`quantize_int8(model, calib_feeds, exclude_nodes=…, method=…)` (its other settings at their defaults), read
    back from the cache where this graph was quantized before on the same feeds with the same settings."""
    from cp_debug.files import cache_dir
    from cp_debug.graph.onnx_files import encoded
    from cp_debug.graph.stored import load_entry, store_entry

    feeds = list(calib_feeds or ())
    exclude = list(dict.fromkeys(exclude_nodes))
    folder = cache_dir("int8")
    data = encoded(model) if folder is not None and feeds else None  # encoded once, for the key
    if data is None:  # past 2 GiB: converted without the cache
        return int8.quantize_int8(model, feeds, exclude_nodes=exclude, method=method)
    key = _cache_key(data, feeds, {"exclude_nodes": exclude, "method": method})
    found = load_entry(folder, key, _CACHE_SCHEMA)
    if found is not None:
        qmodel, meta = found
        return QuantizedModel(qmodel, dict(meta["tensor_map"]), {k: float(v) for k, v in meta["amax"].items()},
                              str(meta["method"]))
    q = int8.quantize_int8(model, feeds, exclude_nodes=exclude, method=method)
    store_entry(folder, key, q.model, {"schema": _CACHE_SCHEMA, "tensor_map": q.tensor_map,
                                       "amax": q.activation_amax, "method": q.method})
    return q


def _cache_key(model: "onnx.ModelProto | bytes", feeds: "list[dict[str, np.ndarray]]", settings: dict) -> str:
    import onnx
    import onnxruntime

    import cp_debug
    from cp_debug.graph.stored import entry_key

    return entry_key(_CACHE_SCHEMA, [cp_debug.__version__, onnx.__version__, onnxruntime.__version__], settings,
                     [__file__, int8.__file__], model, feeds)
