"""ONNX models of any size: the one place that knows how big a graph is, how it is encoded, written, hashed and
handed to ONNX Runtime — inline below protobuf's 2 GiB, with its weights as onnx's external data past it.

Protobuf encodes no message of 2 GiB or more (`SerializeToString` raises `EncodeError`), so a model whose weights
pass `INLINE_LIMIT` is never encoded whole: `save_onnx` writes it as ONNX's external-data layout (the graph in
`NAME.onnx`, every tensor of `EXTERNAL_MIN_BYTES` or more in `NAME.onnx.data`, each at an offset aligned as
`onnx.external_data_helper.convert_model_to_external_data` aligns them, entries `location` / `offset` / `length`),
without copying the model or touching the caller's proto (onnx's own `save_model(save_as_external_data=True)`
clears the weights of the model it is given); `session.session_source` hands ONNX Runtime that path, and
`update_digest` hashes a model by its structure and each tensor's bytes. Past 2 GiB a model this process holds keeps
its weights in files (`keep`, `onnx_read.adopt`, `graph/weight_store.py`). Sizes come from each tensor's dims and
element type (`model_nbytes`): asking protobuf (`ByteSize()`) encodes the whole model, and fails past 2 GiB too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from cp_debug.graph.bodies import bodies

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

PROTO_LIMIT = 2**31 - 1  # protobuf's limit on one encoded message
INLINE_LIMIT = 1_800_000_000  # past this many bytes of tensors a model is kept with external data (room for the graph)
# past this many bytes of tensors a model this process holds keeps its weights in files too (`keep`): every session,
# segment, conversion and hash of it then moves the graph, not the weights (issue 109: a 136 M-parameter Llama's
# bisect encoded its 547 MB 17 times, 24 s of a 96 s run on the CPU machine)
STORE_LIMIT = 128 << 20
EXTERNAL_MIN_BYTES = 1024  # tensors this big or bigger go to the data file (onnx's own size_threshold)
_ALIGN_MIN_BYTES, _ALIGN = 1 << 20, 1 << 16  # onnx's align_threshold and allocation_granularity


def data_file_name(onnx_name: str) -> str:
    """The data file beside `onnx_name` (`model.onnx` -> `model.onnx.data`, as torch.onnx writes it)."""
    return f"{onnx_name}.data"


def tensor_nbytes(t: "onnx.TensorProto") -> int:
    """The bytes a tensor's values take in memory from its dims and element type; 0 where they live outside the
    proto already (external data) or are strings."""
    import onnx

    if t.data_location == onnx.TensorProto.EXTERNAL or t.data_type == onnx.TensorProto.STRING:
        return 0
    n = 1
    for d in t.dims:
        n *= d
    bits = _ELEMENT_BITS.get(t.data_type)
    if bits is None:
        import numpy as np

        bits = 8 * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    return (n * bits + 7) // 8


_ELEMENT_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 16: 16,
                 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4}


def all_tensors(model: "onnx.ModelProto") -> "Iterator[onnx.TensorProto]":
    """Every tensor a model holds: initializers (dense and sparse values) and node attributes' tensors, in every
    subgraph and function (what onnx's external-data helpers walk)."""
    yield from model.graph.initializer
    for sparse in model.graph.sparse_initializer:
        yield sparse.values
    yield from _attribute_tensors(model)


def _attribute_tensors(model: "onnx.ModelProto") -> "Iterator[onnx.TensorProto]":
    """The tensors of a model's node attributes (their subgraphs' included) and functions, in a fixed order."""
    for node in model.graph.node:
        yield from _node_tensors(node)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: "onnx.GraphProto") -> "Iterator[onnx.TensorProto]":
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: "onnx.NodeProto") -> "Iterator[onnx.TensorProto]":
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
    for g in bodies(node):
        yield from _graph_tensors(g)


def model_nbytes(model: "onnx.ModelProto") -> int:
    """The bytes of the tensors a model holds in memory (`tensor_nbytes` over `all_tensors`): its size to within
    the graph's own few kilobytes, read without encoding it."""
    return sum(tensor_nbytes(t) for t in all_tensors(model))


def fits_inline(model: "onnx.ModelProto") -> bool:
    """Whether `model` can be encoded as one protobuf message (its tensors under `INLINE_LIMIT`)."""
    return model_nbytes(model) < INLINE_LIMIT


def encoded(model: "onnx.ModelProto") -> bytes | None:
    """`model.SerializeToString()`, or None where the model does not fit one message (nothing is encoded then) or
    keeps weights in the process's weights folder (its bytes alone are no model to write or hash)."""
    from google.protobuf.message import EncodeError

    if not fits_inline(model) or holds_stored(model):
        return None
    try:
        data = model.SerializeToString()
    except EncodeError:
        return None
    return data if len(data) < PROTO_LIMIT else None


def save_onnx(model: "onnx.ModelProto", path: str | os.PathLike, *, external: bool | None = None) -> list[Path]:
    """Write `model` to `path` whole (temp file + rename), the files written (`path`, and its data file where the
    weights go outside). `external`: None = only where the whole model, its weights kept in the weights folder
    counted, is past `INLINE_LIMIT` (such weights are read into the one file otherwise); True = always (a folder a
    user zips stays self-contained: the data file sits beside the graph, named relative to it). Either way the file
    stands on its own: no tensor of it points into the process's weights folder. The caller's proto is not
    changed."""
    from cp_debug.files import write_atomic, write_bytes_atomic

    path = Path(path)
    stored = holds_stored(model)
    if external is None:
        external = model_nbytes(model) + (stored_nbytes(model) if stored else 0) >= INLINE_LIMIT
    if not external:
        data = encoded(inlined(model))
        if data is None:  # the graph itself (not its tensors) past the limit: nothing can write it
            from cp_debug.errors import BadInputError

            raise BadInputError(f"cannot write {path.name}: its graph alone is over protobuf's 2 GiB")
        return [write_bytes_atomic(path, data)]
    light, parts = split_weights(model, data_file_name(path.name), take_stored=True)
    data_path = write_atomic(path.with_name(data_file_name(path.name)), lambda f: write_parts(f, parts))
    return [data_path, write_bytes_atomic(path, light.SerializeToString())]


def inlined(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` with its tensors kept in the weights folder holding their values again (`raw_data`): a model a file
    or another process can take whole. A copy where there are such tensors (`model` itself is not changed), else
    `model`."""
    import onnx

    from cp_debug.graph.weight_store import is_stored

    if not holds_stored(model):
        return model
    out = copy_model(model)
    for t in all_tensors(out):
        if is_stored(t):
            data = b"".join(tensor_bytes(t))
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
            t.raw_data = data
    return out


def split_weights(model: "onnx.ModelProto", location: str, *, min_bytes: int = EXTERNAL_MIN_BYTES,
                  take_stored: bool = False):
    """(a copy of `model` whose tensors of `min_bytes` or more point into `location`, [(offset, tensor)] to write
    there). The copy holds no weight bytes: the big initializers are added empty, node attributes (rarely big) are
    copied and then emptied. `take_stored`: tensors kept in the process's weights folder (`weight_store`) are
    written into `location` too (a file for someone else); else they stay where they are."""
    import onnx

    from cp_debug.graph.weight_store import is_stored, span

    def size_of(t: "onnx.TensorProto") -> int:
        return span(t)[2] if take_stored and is_stored(t) else tensor_nbytes(t)

    light = onnx.ModelProto()
    copy_fields(model, light, skip="graph")
    copy_fields(model.graph, light.graph, skip="initializer")
    parts: list[tuple[int, onnx.TensorProto]] = []
    offset = 0

    def place(src: "onnx.TensorProto", dst: "onnx.TensorProto") -> None:
        nonlocal offset
        size = size_of(src)
        if size >= _ALIGN_MIN_BYTES and offset % _ALIGN:
            offset += _ALIGN - offset % _ALIGN
        for field in _VALUE_FIELDS:
            dst.ClearField(field)
        dst.data_location = onnx.TensorProto.EXTERNAL
        del dst.external_data[:]
        for key, value in (("location", location), ("offset", offset), ("length", size)):
            dst.external_data.add(key=key, value=str(value))
        parts.append((offset, src))
        offset += size

    for t in model.graph.initializer:
        if size_of(t) >= min_bytes:
            dst = light.graph.initializer.add()
            dst.CopyFrom(_light(t))
            place(t, dst)
        else:
            light.graph.initializer.append(t)
    for src, dst in zip(_attribute_tensors(model), _attribute_tensors(light)):
        if size_of(src) >= min_bytes:
            place(src, dst)
    return light, parts


def copy_fields(src, dst, skip: str) -> None:
    """Every field set in the protobuf message `src` but `skip`, copied into the empty message `dst` (a model
    without its graph, a graph without its initializers)."""
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if fd.is_repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def write_parts(f, parts) -> None:
    """Each tensor's bytes (little-endian, as `raw_data` holds them) at its offset, one tensor in memory at a time;
    a stored one copied from its file in chunks."""
    for offset, t in parts:
        if f.tell() < offset:
            f.write(b"\0" * (offset - f.tell()))
        for chunk in tensor_bytes(t):
            f.write(chunk)


def tensor_bytes(t: "onnx.TensorProto", chunk: int = 64 << 20) -> "Iterator[bytes]":
    """A tensor's values as little-endian bytes (what `raw_data` or an external data file holds), in pieces: a stored
    tensor (`weight_store`) read from its file `chunk` bytes at a time."""
    from onnx import numpy_helper

    from cp_debug.graph.weight_store import is_stored, span

    if is_stored(t):
        path, offset, length = span(t)
        with open(path, "rb") as src:
            src.seek(offset)
            while length > 0:
                piece = src.read(min(chunk, length))
                if not piece:
                    raise OSError(f"{path.name} ends before {t.name!r} does")
                length -= len(piece)
                yield piece
    elif t.HasField("raw_data"):
        yield t.raw_data
    else:
        yield numpy_helper.to_array(t).tobytes()  # x86, ARM: little-endian


def copy_tensor(src: "onnx.TensorProto", dst: "onnx.TensorProto") -> None:
    """`dst.CopyFrom(src)` for a tensor of any size: protobuf copies a message by encoding it, which fails for one
    tensor of 2 GiB or more (an LLM's embedding in FP32); such a tensor's fields are copied one by one."""
    if tensor_nbytes(src) < _COPY_WHOLE_BYTES:
        dst.CopyFrom(src)
        return
    dst.CopyFrom(_light(src))
    for field in _VALUE_FIELDS:
        if field == "raw_data":
            if src.HasField("raw_data"):
                dst.raw_data = src.raw_data
        elif len(getattr(src, field)):
            getattr(dst, field).extend(getattr(src, field))


def add_initializers(graph: "onnx.GraphProto", tensors) -> None:
    """Append copies of `tensors` to `graph`'s initializers, each copied by `copy_tensor` (`initializer.extend` and
    `onnx.helper.make_graph(initializer=...)` encode each tensor to copy it)."""
    for t in tensors:
        copy_tensor(t, graph.initializer.add())


def copy_model(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of `model` (`CopyFrom` for a model of any size: its weights copied one by one)."""
    import onnx

    out = onnx.ModelProto()
    if model_nbytes(model) < _COPY_WHOLE_BYTES:
        out.CopyFrom(model)
        return out
    copy_fields(model, out, skip="graph")
    copy_fields(model.graph, out.graph, skip="initializer")
    add_initializers(out.graph, model.graph.initializer)
    return out


_COPY_WHOLE_BYTES = 1 << 30
_VALUE_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                 "string_data")


def _light(t: "onnx.TensorProto") -> "onnx.TensorProto":
    """`t` without its values (name, element type, dims, location and the rest)."""
    import onnx

    out = onnx.TensorProto(dims=t.dims)
    for field in ("name", "data_type", "doc_string", "data_location"):  # by name: ListFields would copy raw_data
        if t.HasField(field):
            setattr(out, field, getattr(t, field))
    if t.HasField("segment"):
        out.segment.CopyFrom(t.segment)
    out.external_data.extend(t.external_data)
    out.metadata_props.extend(t.metadata_props)
    return out


def export_graph(graph, **kwargs) -> "onnx.ModelProto":
    """`onnx_graphsurgeon.export_onnx(graph, **kwargs)` for a graph of any size: graphsurgeon hands each weight's
    proto to `onnx.helper.make_graph`, which copies it by encoding it (and fails for one of 2 GiB); a weight that
    big is exported empty and its values copied in afterwards (`copy_tensor`)."""
    import onnx_graphsurgeon as gs
    from onnx_graphsurgeon.ir.tensor import LazyValues

    swapped = []  # (stored weights are exported as their file and offset: nothing to copy)
    for t in graph.tensors().values():
        values = getattr(t, "_values", None) if isinstance(t, gs.Constant) else None
        if isinstance(values, LazyValues) and tensor_nbytes(values.tensor) >= _COPY_WHOLE_BYTES:
            swapped.append((t, values))
            t._values = LazyValues(_light(values.tensor))
    try:
        model = gs.export_onnx(graph, **kwargs)
    finally:
        for t, values in swapped:
            t._values = values
    if swapped:
        big = {t.name: values.tensor for t, values in swapped}
        for init in model.graph.initializer:
            if init.name in big:
                copy_tensor(big[init.name], init)
    return keep(model)  # weights made or changed by the edit (an FP16 copy) past 2 GiB go to the weights folder


def update_digest(h, model: "onnx.ModelProto") -> None:
    """Feed `model` into the hash `h`: its encoding where it fits one message, else the encoding of its graph
    without weights and each tensor's bytes in turn (one tensor in memory at a time)."""
    data = encoded(model)  # None where it holds weights of the weights folder: hashed by their bytes below
    if data is not None:
        h.update(data)
        return
    light, parts = split_weights(model, "digest", take_stored=True)  # stored weights by their bytes, not their file
    h.update(light.SerializeToString())
    for offset, t in parts:
        h.update(f"{offset}:".encode())
        for chunk in tensor_bytes(t):
            h.update(chunk)


def holds_stored(model: "onnx.ModelProto") -> bool:
    """Whether any tensor of `model` lives in the weights folder (its sessions must be pointed there)."""
    from cp_debug.graph import weight_store

    return weight_store.in_use() and any(weight_store.is_stored(t) for t in all_tensors(model))


def stored_nbytes(model: "onnx.ModelProto") -> int:
    """The bytes of `model`'s tensors kept in the weights folder or a user's data file (`weight_store`)."""
    from cp_debug.graph import weight_store

    if not weight_store.in_use():
        return 0
    return sum(weight_store.span(t)[2] for t in all_tensors(model) if weight_store.is_stored(t))


def total_nbytes(model: "onnx.ModelProto") -> int:
    """The bytes of all of `model`'s tensors, in memory (`model_nbytes`) and kept in files (`stored_nbytes`)."""
    return model_nbytes(model) + stored_nbytes(model)


def store_array(array: "np.ndarray", name: str) -> "onnx.TensorProto":
    """`array` written into a new file of the weights folder, as the stored tensor `name` pointing there."""
    import numpy as np
    import onnx

    from cp_debug.files import write_atomic
    from cp_debug.graph.weight_store import new_file, register

    array = np.ascontiguousarray(array)
    path = new_file()
    write_atomic(path, lambda f: f.write(memoryview(array.reshape(-1).view(np.uint8))), durable=False)
    t = onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", register(path)), ("offset", 0), ("length", array.nbytes)):
        t.external_data.add(key=key, value=str(value))
    return t


def keep(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` as this process holds it: as it is where its inline tensors are under `STORE_LIMIT`, else with every
    inline tensor of `STORE_MIN_BYTES` or more written once into a new data file of the weights folder (the graph
    returned points there; `model` itself is not changed)."""
    from cp_debug.files import write_atomic
    from cp_debug.graph.weight_store import STORE_MIN_BYTES, new_file, register

    if model_nbytes(model) < STORE_LIMIT:
        return model
    path = new_file()
    light, parts = split_weights(model, register(path), min_bytes=STORE_MIN_BYTES)
    write_atomic(path, lambda f: write_parts(f, parts), durable=False)
    return light
