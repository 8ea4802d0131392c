"""An ONNX file read as this process holds it (`read_onnx`): the graph, and its external data read in where the whole
fits one message, else its data files registered where they lie (`adopt`: nothing read, nothing copied, the tensors
*stored* in `graph/weight_store.py`'s sense). Writing, sizes and encodings stay in `onnx_files.py`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.graph import onnx_files
from cp_debug.graph.onnx_files import all_tensors, keep, model_nbytes

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def external_locations(model: "onnx.ModelProto") -> list[str]:
    """The data files (`location`, relative to the model's folder) that `model`'s tensors keep their values in."""
    from cp_debug.graph.weight_store import location

    return sorted({loc for loc in map(location, all_tensors(model)) if loc is not None})


def read_onnx(path: Path) -> "onnx.ModelProto":
    """An ONNX file as this process holds it: the graph, and where its tensors live outside it (external data beside
    the file) their values read in if the whole fits one message, else the data files registered where they lie
    (`adopt`: nothing read, nothing copied). A data file that is not there: `MissingDataFile`."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    missing = [loc for loc in external_locations(model) if not (path.parent / loc).is_file()]
    if missing:
        raise MissingDataFile(missing[0])
    outside = [t for t in all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    if not outside:
        return keep(model)
    if model_nbytes(model) + sum(_length(t, path.parent) for t in outside) < onnx_files.STORE_LIMIT:
        onnx.load_external_data_for_model(model, str(path.parent))
        return model
    return keep(adopt(model, path.parent))


class MissingDataFile(FileNotFoundError):
    """A model file's external data file (its `location`, the exception's text) is not beside it."""


def _length(t: "onnx.TensorProto", base: Path) -> int:
    info = {e.key: e.value for e in t.external_data}
    if "length" in info:
        return int(info["length"])
    return (base / info["location"]).stat().st_size - int(info.get("offset", 0))


def adopt(model: "onnx.ModelProto", base: Path) -> "onnx.ModelProto":
    """A model read with `load_external_data=False` from a file in `base`, its tensors kept where they lie (their
    data files registered as stored: nothing read or copied), but those under a MiB (shapes, scales: what shape
    inference and the readers of constants read), which are read in (noted: `weight_store.referring` points a
    session's graph at those past 64 KiB again). `model` is changed in place (the caller's own fresh load) and
    returned."""
    from onnx.external_data_helper import load_external_data_for_tensor

    from cp_debug.graph.weight_store import STORE_MIN_BYTES, location, note_read_in, register

    registered: dict[str, str] = {}
    for t in all_tensors(model):
        loc = location(t)
        if loc is None:
            continue
        if (length := _length(t, base)) < STORE_MIN_BYTES:
            offset = int(next((e.value for e in t.external_data if e.key == "offset"), 0))
            load_external_data_for_tensor(t, str(base))
            note_read_in(t.name, base / loc, offset, length)  # a session's graph may point at it again
            continue
        if loc not in registered:
            registered[loc] = register(base / loc)
        for e in t.external_data:
            if e.key == "location":
                e.value = registered[loc]
    return model
