"""ONNX models of any size: the one place that knows how big a graph is, how it is encoded, written, hashed and
handed to ONNX Runtime — inline below protobuf's 2 GiB, with its weights as onnx's external data past it.

Protobuf encodes no message of 2 GiB or more (`SerializeToString` raises `EncodeError`), so a model whose weights
pass `INLINE_LIMIT` is never encoded whole: `save_onnx` writes it as ONNX's external-data layout (the graph in
`NAME.onnx`, every tensor of `EXTERNAL_MIN_BYTES` or more in `NAME.onnx.data`, each at an offset aligned as
`onnx.external_data_helper.convert_model_to_external_data` aligns them, entries `location` / `offset` / `length`),
without copying the model or touching the caller's proto (onnx's own `save_model(save_as_external_data=True)`
clears the weights of the model it is given); ONNX Runtime makes a session from that path (`session_source`), and
`update_digest` hashes a model by its structure and each tensor's bytes. Sizes come from each tensor's dims and
element type (`model_nbytes`): asking protobuf (`ByteSize()`) encodes the whole model, and fails past 2 GiB too.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import onnx

PROTO_LIMIT = 2**31 - 1  # protobuf's limit on one encoded message
INLINE_LIMIT = 1_800_000_000  # past this many bytes of tensors a model is kept with external data (room for the graph)
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
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for g in attr.graphs:
            yield from _graph_tensors(g)


def external_locations(model: "onnx.ModelProto") -> list[str]:
    """The data files (`location`, relative to the model's folder) that `model`'s tensors keep their values in."""
    import onnx

    found = {e.value for t in all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL
             for e in t.external_data if e.key == "location"}
    return sorted(found)


def model_nbytes(model: "onnx.ModelProto") -> int:
    """The bytes of the tensors a model holds in memory (`tensor_nbytes` over `all_tensors`): its size to within
    the graph's own few kilobytes, read without encoding it."""
    return sum(tensor_nbytes(t) for t in all_tensors(model))


def fits_inline(model: "onnx.ModelProto") -> bool:
    """Whether `model` can be encoded as one protobuf message (its tensors under `INLINE_LIMIT`)."""
    return model_nbytes(model) < INLINE_LIMIT


def encoded(model: "onnx.ModelProto") -> bytes | None:
    """`model.SerializeToString()`, or None where the model does not fit one message (nothing is encoded then)."""
    from google.protobuf.message import EncodeError

    if not fits_inline(model):
        return None
    try:
        data = model.SerializeToString()
    except EncodeError:
        return None
    return data if len(data) < PROTO_LIMIT else None


def save_onnx(model: "onnx.ModelProto", path: str | os.PathLike, *, external: bool | None = None) -> list[Path]:
    """Write `model` to `path` whole (temp file + rename), the files written (`path`, and its data file where the
    weights go outside). `external`: None = past `INLINE_LIMIT` only; True = always (a folder a user zips stays
    self-contained: the data file sits beside the graph, named relative to it). The caller's proto is not changed."""
    from cp_debug.files import write_atomic, write_bytes_atomic

    path = Path(path)
    if external is None:
        external = not fits_inline(model)
    if not external:
        data = encoded(model)
        if data is None:  # the graph itself (not its tensors) past the limit: nothing can write it
            from cp_debug.errors import BadInputError

            raise BadInputError(f"cannot write {path.name}: its graph alone is over protobuf's 2 GiB")
        return [write_bytes_atomic(path, data)]
    light, parts = _split_weights(model, data_file_name(path.name))
    data_path = write_atomic(path.with_name(data_file_name(path.name)), lambda f: _write_parts(f, parts))
    return [data_path, write_bytes_atomic(path, light.SerializeToString())]


def _split_weights(model: "onnx.ModelProto", location: str):
    """(a copy of `model` whose tensors of `EXTERNAL_MIN_BYTES` or more point into `location`, [(offset, tensor)]
    to write there). The copy holds no weight bytes: the big initializers are added empty, node attributes (rarely
    big) are copied and then emptied."""
    import onnx

    light = onnx.ModelProto()
    copy_fields(model, light, skip="graph")
    copy_fields(model.graph, light.graph, skip="initializer")
    parts: list[tuple[int, onnx.TensorProto]] = []
    offset = 0

    def place(src: "onnx.TensorProto", dst: "onnx.TensorProto") -> None:
        nonlocal offset
        size = tensor_nbytes(src)
        if size >= _ALIGN_MIN_BYTES and offset % _ALIGN:
            offset += _ALIGN - offset % _ALIGN
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            dst.ClearField(field)
        dst.data_location = onnx.TensorProto.EXTERNAL
        del dst.external_data[:]
        for key, value in (("location", location), ("offset", offset), ("length", size)):
            dst.external_data.add(key=key, value=str(value))
        parts.append((offset, src))
        offset += size

    for t in model.graph.initializer:
        if tensor_nbytes(t) >= EXTERNAL_MIN_BYTES:
            dst = light.graph.initializer.add()
            dst.CopyFrom(_light(t))
            place(t, dst)
        else:
            light.graph.initializer.append(t)
    for src, dst in zip(_attribute_tensors(model), _attribute_tensors(light)):
        if tensor_nbytes(src) >= EXTERNAL_MIN_BYTES:
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


def _write_parts(f, parts) -> None:
    """Each tensor's bytes (little-endian, as `raw_data` holds them) at its offset, one tensor in memory at a time."""
    from onnx import numpy_helper

    for offset, t in parts:
        if f.tell() < offset:
            f.write(b"\0" * (offset - f.tell()))
        f.write(t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes())  # x86, ARM: LE


@contextmanager
def session_source(model: "onnx.ModelProto", folder: str | os.PathLike | None = None) -> Iterator[bytes | str]:
    """What `onnxruntime.InferenceSession` takes for `model`: its bytes when it fits one message, else the path of a
    copy written with external data into `folder` (a temporary folder, removed on exit, where none is given).
    ONNX Runtime reads the weights while the session is made, so the files may go once it exists."""
    import tempfile

    data = encoded(model)
    if data is not None:
        yield data
        return
    if folder is not None:
        target = Path(folder) / "model.onnx"
        save_onnx(model, target, external=True)
        yield str(target)
        return
    with tempfile.TemporaryDirectory(prefix="cpdebug_big_") as tmp:
        target = Path(tmp) / "model.onnx"
        save_onnx(model, target, external=True)
        yield str(target)


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

    swapped = []
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
    return model


def update_digest(h, model: "onnx.ModelProto") -> None:
    """Feed `model` into the hash `h`: its encoding where it fits one message, else the encoding of its graph
    without weights and each tensor's bytes in turn (one tensor in memory at a time)."""
    data = encoded(model)
    if data is not None:
        h.update(data)
        return
    light, parts = _split_weights(model, "digest")
    h.update(light.SerializeToString())
    for offset, t in parts:
        h.update(f"{offset}:".encode())
        h.update(t.raw_data if t.HasField("raw_data") else t.SerializeToString())
