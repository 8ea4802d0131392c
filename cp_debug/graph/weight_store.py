"""Weights kept in files while a process runs: a model past protobuf's 2 GiB holds its big tensors as onnx's
external data, so that a graph edit, a segment cut or a copy moves names and offsets, not gigabytes, and ONNX Runtime
reads the weights from the files itself.

`onnx_files.keep(model)` is the door: a model whose tensors fit one protobuf message comes back as it is — every
model of the test suite, CenterPoint — and a bigger one as a graph whose tensors of a MiB or more point into a data
file written once into `folder()` (`cpdebug_weights_*` in the temporary directory, removed when the process ends);
a user's own data file is used where it lies (`onnx_read.adopt`: nothing read, copied or linked). Such a tensor is
*stored*: its `location` is its file's absolute path less the leading "/" (`register`), so that one folder, the
root, holds every stored file for ONNX Runtime (`session.point_at_weights`: a session made from the graph's bytes
with `session.model_external_initializers_file_folder_path` = "/"; ONNX Runtime refuses a path leaving that folder,
a symbolic link's target too, and onnx's own reader refuses absolute paths and hard-linked files). `values(t)` reads
a stored tensor (mapped from its file), graphsurgeon reads it through `import_graph` (its constants'
`StoredValues`), and `onnx_files.save_onnx` copies its bytes into the file it writes, so that what a user gets stays
self-contained. The smaller tensors `adopt` reads in from a user's data file go to ONNX Runtime as references to
where they lie again where their bytes are unchanged (`referring`: a session made from the graph's bytes)."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

STORE_MIN_BYTES = 1 << 20  # smaller tensors (shapes, scales, norms' weights) stay in the graph, readable as they are
ROOT = "/"  # the folder every stored location is relative to
_FOLDER: Path | None = None
_LOCATIONS: set[str] = set()  # the locations this process registered
_LOCK = threading.Lock()
_COUNT = itertools.count()


def folder() -> Path:
    """The process's weights folder, made on first use and removed when the process ends."""
    global _FOLDER
    with _LOCK:
        if _FOLDER is None:
            _FOLDER = Path(tempfile.mkdtemp(prefix="cpdebug_weights_"))
            atexit.register(shutil.rmtree, _FOLDER, True)
        return _FOLDER


def in_use() -> bool:
    """Whether this process has stored any weights (none has: no tensor can be stored)."""
    return bool(_LOCATIONS)


def new_file() -> Path:
    """A new data file's path in the weights folder (not created)."""
    return folder() / f"w{os.getpid()}-{next(_COUNT)}.data"


def register(path: Path) -> str:
    """The location of a stored tensor in the file `path` (its absolute path less the leading "/"), registered."""
    loc = str(Path(path).resolve()).lstrip("/")
    with _LOCK:
        _LOCATIONS.add(loc)
    return loc


def location(t: "onnx.TensorProto") -> str | None:
    """The data file of an external tensor (its `location`), else None."""
    import onnx

    if t.data_location != onnx.TensorProto.EXTERNAL:
        return None
    return next((e.value for e in t.external_data if e.key == "location"), None)


def is_stored(t: "onnx.TensorProto") -> bool:
    """Whether `t`'s values live in this process's weights folder."""
    if not _LOCATIONS:
        return False
    return location(t) in _LOCATIONS


def span(t: "onnx.TensorProto") -> tuple[Path, int, int]:
    """(file, offset, length) of a stored tensor."""
    info = {e.key: e.value for e in t.external_data}
    path = Path(ROOT) / info["location"]
    offset = int(info.get("offset", 0))
    length = int(info["length"]) if "length" in info else path.stat().st_size - offset
    return path, offset, length


def values(t: "onnx.TensorProto") -> "np.ndarray":
    """A stored tensor's values, mapped read-only from its file (pages read as they are touched)."""
    import numpy as np
    import onnx

    path, offset, length = span(t)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    shape = tuple(int(d) for d in t.dims)
    if length == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def derived(source: "onnx.TensorProto", kind: str, make):
    """What `make()` gives for the stored tensor `source` under `kind` (its float16 copy, its float32 widening and
    what was learned making it), made once a process: a bisect converts the whole graph and then each segment cut
    from it, and a segment reads the same weights."""
    key = (location(source), tuple((e.key, e.value) for e in source.external_data), kind)
    with _LOCK:
        if key in _DERIVED:
            return _DERIVED[key]
    value = make()
    with _LOCK:
        return _DERIVED.setdefault(key, value)


_DERIVED: dict = {}


def stored_source(const) -> "onnx.TensorProto | None":
    """The stored tensor a graphsurgeon constant reads (its `StoredValues`, not yet loaded), else None."""
    values = getattr(const, "_values", None)
    if _STORED_VALUES is not None and isinstance(values, _STORED_VALUES):
        return values.tensor
    return None


def import_graph(model: "onnx.ModelProto") -> "gs.Graph":
    """`gs.import_onnx(model)` whose constants read stored weights from the weights folder (graphsurgeon's own
    loader resolves external data against the working directory, and fails) and whose export leaves `model` as it
    was: every graphsurgeon import of cp_debug goes through here."""
    import onnx_graphsurgeon as gs
    from onnx_graphsurgeon.ir.tensor import LazyValues

    graph = gs.import_onnx(model)
    attributes = [v for node in graph.nodes for v in node.attrs.values() if isinstance(v, gs.Constant)]
    for t in [*graph.tensors().values(), *attributes]:
        lazy = getattr(t, "_values", None) if isinstance(t, gs.Constant) else None
        if not isinstance(lazy, LazyValues):
            continue
        if _LOCATIONS and is_stored(lazy.tensor):
            t._values = StoredValues(lazy.tensor)
            t.data_location = None  # values set later are exported inline, not marked external
        elif not lazy.tensor.HasField("name"):
            # a node attribute's tensor (ConstantOfShape's value): graphsurgeon's export writes the tensor it was read
            # from, naming it, into the graph it makes — `model`'s own node then holds `name: ""` it did not
            # (2 bytes more: a served bisect's next command no longer took the session of the graph as deployed)
            t._values = LazyValues(_copied(lazy.tensor))
    return graph


def _copied(t: "onnx.TensorProto") -> "onnx.TensorProto":
    import onnx

    out = onnx.TensorProto()
    out.CopyFrom(t)
    return out


def _stored_values_class():
    from onnx_graphsurgeon.ir.tensor import LazyValues

    class _StoredValues(LazyValues):
        """graphsurgeon's lazy values of a stored tensor: exported as the tensor (its file and offset), loaded
        from the weights folder when read."""

        def load(self):
            import numpy as np

            return np.array(values(self.tensor))

    return _StoredValues


def StoredValues(tensor: "onnx.TensorProto"):  # noqa: N802 - a class made once graphsurgeon is imported
    global _STORED_VALUES
    if _STORED_VALUES is None:
        _STORED_VALUES = _stored_values_class()
    return _STORED_VALUES(tensor)


_STORED_VALUES = None


REFER_MIN_BYTES = 64 << 10  # a tensor read in from a data file from this size up: a session's graph points at it
_READ_IN: dict[str, list[tuple[str, int, int]]] = {}  # its name -> (location, offset, length) where it was read


def note_read_in(name: str, path: Path, offset: int, length: int) -> None:
    """The tensor `name` was read into a graph from the data file `path` (`length` bytes at `offset`: `onnx_read.adopt`
    reads a stored file's tensors under `STORE_MIN_BYTES` in): `referring` may point a session's graph at them again
    rather than encode them."""
    if length >= REFER_MIN_BYTES:
        loc = register(path)
        with _LOCK:
            spots = _READ_IN.setdefault(name, [])
            if (loc, offset, length) not in spots:  # a file read again (the deployed files' mapping)
                spots.append((loc, offset, length))


def referring(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` as a session made from its bytes takes it (a model holding stored tensors, its session pointed at the
    root): each inline tensor read in from a data file (`note_read_in`), its bytes unchanged (compared with the
    file's), as a stored tensor pointing there again — ONNX Runtime reads it from the file — and the rest as it is;
    `model` itself where no tensor is such. A 0.5 B INT4 builder file's 170 scales and zero points of 64 KiB-1 MiB
    (68 MB) cost each of its sessions 0.3 CPU s more from the graph's bytes, 0.12 s encoding them and as much copying
    the message (issue 116 item 5); `model` is not changed."""
    import onnx

    if not _READ_IN:
        return model
    with _LOCK:
        read_in = {name: list(spots) for name, spots in _READ_IN.items()}
    refs: dict[int, onnx.TensorProto] = {}
    for i, t in enumerate(model.graph.initializer):
        spots = read_in.get(t.name)
        if not spots or t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        data = t.raw_data
        for loc, offset, length in spots:
            if length == len(data) and _file_bytes(loc, offset, length) == data:
                ref = refs[i] = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims,
                                                 data_location=onnx.TensorProto.EXTERNAL)
                for key, value in (("location", loc), ("offset", str(offset)), ("length", str(length))):
                    ref.external_data.add(key=key, value=value)
                break
    if not refs:
        return model
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    _copy_fields(model.graph, light.graph, skip="initializer")
    for i, t in enumerate(model.graph.initializer):
        light.graph.initializer.append(refs.get(i, t))
    return light


def _copy_fields(src, dst, skip: str) -> None:
    """Every field `src` has set but `skip`, copied into `dst` (a message of its type)."""
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if hasattr(value, "extend"):  # a repeated field
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def _file_bytes(loc: str, offset: int, length: int) -> bytes:
    with open(Path(ROOT) / loc, "rb") as f:
        f.seek(offset)
        return f.read(length)
