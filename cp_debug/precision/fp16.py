"""FP16 conversion of an ONNX graph, our own, through onnx-graphsurgeon.

Everything is converted by default. There is deliberately no AutoCast-style rule that keeps nodes whose
activations exceed some magnitude in FP32: that rule hides the very overflow a user is hunting. What stays in
FP32 is explicit:
  * nodes named in `keep_fp32_nodes` and op types in `keep_fp32_op_types` (the user's block list);
  * ops that ONNX defines for float32 only (`FP32_ONLY_OPS`) and float32-only input slots (`FP32_ONLY_SLOTS`,
    e.g. Resize's scales), together with the float arithmetic that only feeds them or a Cast to an integer type
    (shape and coordinate math: float16 holds integers exactly only up to 2048, so 2049·2 would become 4096).
    That choice, and the lists, are `precision.fp16_keep`'s.
Graph input and output names never change (probe tensors exposed as outputs before conversion keep their
names): with `keep_io_types` a float32 input is Cast to float16 after it, and a float32 output is produced by a
Cast from a renamed float16 tensor. Value infos of intermediate tensors are cleared and re-inferred.
Conversions read back from the cache folder: `precision.fp16_cache`.
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Iterable

from cp_debug.errors import BackendUnavailableError, CpDebugWarning
from cp_debug.precision.fp16_keep import (ANY_DTYPE_SLOTS, FP32_ONLY_SLOTS, check_convertible,
                                         fp32_nodes, outer_reads)

if TYPE_CHECKING:  # pragma: no cover
    import onnx

_META_KEY = "cp_debug.fp16_conversion"


def convert_to_fp16(model: "onnx.ModelProto", *, keep_fp32_nodes: Iterable[str] = (),
                    keep_fp32_op_types: Iterable[str] = (), keep_io_types: bool = True) -> "onnx.ModelProto":
    """Return a copy of `model` computing in float16, except the nodes kept in float32.

    keep_fp32_nodes: node names to keep in FP32 (unknown names → BadInputError).
    keep_fp32_op_types: op types to keep in FP32 (e.g. "Softmax").
    keep_io_types: float32 graph inputs/outputs stay float32 (Casts inside); False makes float32 graph inputs
        float16 (outputs then have the dtype of the node producing them).
    A summary (nodes converted/kept, Casts inserted, constants that overflow or flush to zero in FP16) is stored
    in the model's metadata under "cp_debug.fp16_conversion" (see `conversion_summary`).
    """
    converted, said = convert_quietly(model, keep_fp32_nodes, keep_fp32_op_types, keep_io_types)
    for text in said:
        warnings.warn(text, CpDebugWarning, stacklevel=2)
    return converted


def convert_quietly(model: "onnx.ModelProto", keep_fp32_nodes: Iterable[str], keep_fp32_op_types: Iterable[str],
                    keep_io_types: bool) -> "tuple[onnx.ModelProto, list[str]]":
    """The conversion (`convert_to_fp16`) and the warnings it has to say, unsaid."""
    from cp_debug.graph.model import cleanup, export_like, import_typed, infer_types

    graph = import_typed(model)
    graph.toposort()
    keep_nodes = set(keep_fp32_nodes)
    check_convertible(graph, keep_nodes)
    step = _Fp16Conversion(graph)
    step.constants_to_initializers()
    step.choose_fp32_nodes(keep_nodes, set(keep_fp32_op_types))
    step.retype(keep_io_types)
    step.convert_constants()
    step.insert_casts()
    step.cast_outer_reads()
    if keep_io_types:
        step.keep_output_types()
    graph.nodes.extend(step.cast_nodes)
    cleanup(graph).toposort()
    converted = export_like(graph, model)
    del converted.graph.value_info[:]  # stale float32 types of intermediates: re-inferred below
    converted = infer_types(converted)

    entry = converted.metadata_props.add()
    entry.key, entry.value = _META_KEY, json.dumps(step.summary())
    said = []
    if step.overflow:
        said.append(f"FP16 conversion: {len(step.overflow)} constant(s) overflow float16 to inf, "
                    f"e.g. {step.overflow[0]!r}")
    if step.untyped:
        said.append(f"FP16 conversion: {step.untyped} tensor(s) have no inferred type; Casts may be missing "
                    "around them")
    return converted, said


class _Fp16Conversion:
    """The steps of one conversion, in order, on one onnx-graphsurgeon graph (edited in place):

    1. `constants_to_initializers`: Constant nodes become constants, so every constant is handled the same way;
    2. `choose_fp32_nodes`: the nodes that compute in FP32 (the user's list, FP32-only ops, the shape arithmetic
       feeding them); every other node computes in FP16;
    3. `retype`: graph inputs (without keep_io_types), node outputs, dtype attributes, ConstantOfShape values;
    4. `convert_constants`: in place when only FP16 consumers read a constant, a float16 copy when both kinds do;
    5. `insert_casts`: where a float input's dtype differs from what its slot needs;
    6. `keep_output_types`: graph outputs keep their names and float32 type (with keep_io_types).
    The Casts made are collected in `cast_nodes` (added to the graph by the caller); new names never clash.
    """

    def __init__(self, graph):
        import numpy as np

        self.graph = graph
        self.f32, self.f16 = np.dtype(np.float32), np.dtype(np.float16)
        self.names: set[str] = set(graph.tensors().keys()) | {n.name for n in graph.nodes}
        self.graph_outputs = {id(t) for t in graph.outputs}
        self.user_kept: set[int] = set()
        self.auto_kept: set[int] = set()
        self.fp32_nodes: set[int] = set()
        self.original_f32: set[int] = set()
        self.cast_nodes: list = []
        self.casts: dict[tuple[int, str], object] = {}
        self.overflow: list[str] = []
        self.flushed = 0
        self.untyped = 0

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def wanted(self, node, slot: int):
        """The dtype a float input slot needs; None when any dtype will do."""
        if slot in ANY_DTYPE_SLOTS.get(node.op, ()):
            return None
        if id(node) in self.fp32_nodes or slot in FP32_ONLY_SLOTS.get(node.op, ()):
            return self.f32
        return self.f16

    # 1 ------------------------------------------------------------------------------------------------------------
    def constants_to_initializers(self) -> None:
        """Constant nodes → constants (the tensor keeps its name); a Constant that is a graph output stays."""
        for node in self.graph.nodes:
            if node.op == "Constant" and len(node.outputs) == 1 and id(node.outputs[0]) not in self.graph_outputs:
                values = _constant_node_values(node)
                if values is not None:
                    out = node.outputs[0]
                    out.to_constant(values)
                    node.outputs.clear()
        from cp_debug.graph.model import cleanup

        cleanup(self.graph)

    # 2 ------------------------------------------------------------------------------------------------------------
    def choose_fp32_nodes(self, keep_nodes: set[str], keep_ops: set[str]) -> None:
        """The user's nodes and op types, FP32-only ops, and the shape arithmetic feeding them (`fp32_nodes`)."""
        self.user_kept, self.auto_kept = fp32_nodes(self.graph, keep_nodes, keep_ops)
        self.fp32_nodes = self.user_kept | self.auto_kept

    # 3 ------------------------------------------------------------------------------------------------------------
    def retype(self, keep_io_types: bool) -> None:
        """Graph inputs (unless kept), then every FP16 node: its outputs, dtype attributes, ConstantOfShape value."""
        import onnx_graphsurgeon as gs

        f32, f16 = self.f32, self.f16
        self.original_f32 = {id(t) for t in self.graph.tensors().values()
                             if isinstance(t, gs.Variable) and t.dtype == f32}
        if not keep_io_types:
            for t in self.graph.inputs:
                if t.dtype == f32:
                    t.dtype = f16
        for node in self.graph.nodes:
            if id(node) in self.fp32_nodes:
                continue
            self._retype_attrs(node)
            for out in node.outputs:
                if out.dtype == f32:
                    out.dtype = f16
                elif out.dtype is None and out.name:
                    self.untyped += 1

    def _retype_attrs(self, node) -> None:
        import numpy as np
        import onnx
        import onnx_graphsurgeon as gs

        if node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.FLOAT:
            node.attrs["to"] = onnx.TensorProto.FLOAT16
        if node.attrs.get("dtype") == onnx.TensorProto.FLOAT:
            node.attrs["dtype"] = onnx.TensorProto.FLOAT16
        if node.op == "ConstantOfShape":
            value = node.attrs.get("value")
            if value is None:  # default: float32 zero
                node.attrs["value"] = gs.Constant(self.unique(f"{node.name}_value"), np.zeros([1], dtype=self.f16))
            elif isinstance(value, gs.Constant) and value.dtype == self.f32:
                node.attrs["value"] = gs.Constant(value.name, np.asarray(value.values, dtype=self.f16))

    # 4 ------------------------------------------------------------------------------------------------------------
    def convert_constants(self) -> None:
        """Float32 constants read by FP16 slots: converted in place, or copied to float16 where an FP32 slot (or
        the graph's outputs) still reads the float32 values. Overflow to inf and flushes to zero are counted."""
        import onnx_graphsurgeon as gs

        const_uses: dict[int, list] = {}
        for node in self.graph.nodes:
            for slot, t in enumerate(node.inputs):
                if isinstance(t, gs.Constant) and t.dtype == self.f32 and t.export_dtype == self.f32:
                    const_uses.setdefault(id(t), []).append((node, slot, t))
        fp16_copies: dict[int, gs.Constant] = {}
        for uses in const_uses.values():
            const = uses[0][2]
            want16 = [(n, s) for n, s, _ in uses if self.wanted(n, s) == self.f16]
            if not want16:
                continue
            half = self._half_values(const)
            keep32 = any(self.wanted(n, s) == self.f32 for n, s, _ in uses) or id(const) in self.graph_outputs
            if keep32:
                copy = fp16_copies.get(id(const)) or gs.Constant(self.unique(f"{const.name}_fp16"), half)
                fp16_copies[id(const)] = copy
                for n, s in want16:
                    n.inputs[s] = copy
            else:
                const.values = half

    def _half_values(self, const):
        import numpy as np

        from cp_debug.graph.weight_store import stored_source

        source = stored_source(const)
        if source is not None:  # past 2 GiB: its float16 copy stored too, made once a process
            half, overflow, flushed = self._half_stored(const, source)
        else:
            half, overflow, flushed = self._halved(np.asarray(const.values))
        if overflow:
            self.overflow.append(const.name)
        self.flushed += flushed
        return half

    def _half_stored(self, const, source):
        """`_halved` of a stored constant, its float16 values stored in turn (graphsurgeon exports them as their
        file): made once a process."""
        from cp_debug.graph import weight_store
        from cp_debug.graph.onnx_files import store_array

        def make():
            half, overflow, flushed = self._halved(weight_store.values(source))
            return store_array(half, const.name), overflow, flushed

        tensor, overflow, flushed = weight_store.derived(source, "float16", make)
        return weight_store.StoredValues(tensor), overflow, flushed

    def _halved(self, values):
        """(the float16 values of `values`, whether a finite value overflowed, how many nonzero ones flushed to 0)."""
        import numpy as np

        from cp_debug.half import to_fp16

        # a stored weight (an LLM's embedding: 560 M elements) through ONNX Runtime's Cast, bit for bit astype's:
        # numpy's element-wise conversion took 5.5 s of a 2.24 GB model's bisect
        with np.errstate(over="ignore"):  # a value past float16's range becomes inf: counted below, not a warning
            half = to_fp16(values) if values.dtype == self.f32 and values.size >= 1 << 20 else values.astype(self.f16)
        # read on float16's bits (float16 comparisons are slow in numpy: this took 2.2 of 6.3 CPU-s of the suite's
        # constant conversions): inf/nan in `half` is an all-ones exponent, and only then is the exact test run;
        # every value that was zero is zero in float16, so the flushed ones are the zeros gained
        bits = half.view(np.uint16)
        overflow = False
        if ((bits & 0x7C00) == 0x7C00).any():
            with np.errstate(invalid="ignore"):
                overflow = bool((np.isfinite(values) & ~np.isfinite(half)).any())
        return half, overflow, int(np.count_nonzero((bits & 0x7FFF) == 0)) - int(np.count_nonzero(values == 0))

    # 5 ------------------------------------------------------------------------------------------------------------
    def insert_casts(self) -> None:
        """A Cast in front of every float input whose dtype is not what its slot needs (one Cast per tensor and
        dtype): graph inputs, the edges into and out of FP32 nodes, FP32-only slots."""
        for node in list(self.graph.nodes):
            for slot, t in enumerate(node.inputs):
                if t is None or not t.name or t.dtype not in (self.f32, self.f16):
                    continue
                need = self.wanted(node, slot)
                if need is not None and t.dtype != need:
                    node.inputs[slot] = self._cast(t, need)

    def cast_outer_reads(self) -> None:
        """An If / Loop / Scan stays FP32 whole (`fp16_keep.fp32_nodes`); where its body reads an outer tensor by
        name (not as an input) that is now float16, the body reads its Cast to float32 instead."""
        for node, slot, t in outer_reads(self.graph):
            if t.dtype == self.f16:
                node.inputs[slot] = self._cast(t, self.f32)

    def _cast(self, t, dtype):
        import onnx
        import onnx_graphsurgeon as gs

        key = (id(t), dtype.name)
        if key not in self.casts:
            suffix = "fp16" if dtype == self.f16 else "fp32"
            out = gs.Variable(self.unique(f"{t.name}_{suffix}"), dtype=dtype, shape=t.shape)
            to = onnx.TensorProto.FLOAT16 if dtype == self.f16 else onnx.TensorProto.FLOAT
            self.cast_nodes.append(gs.Node("Cast", self.unique(f"{t.name}_cast_{suffix}"), {"to": to}, [t], [out]))
            self.casts[key] = out
        return self.casts[key]

    # 6 ------------------------------------------------------------------------------------------------------------
    def keep_output_types(self) -> None:
        """Each float32 graph output now float16: its tensor renamed, a Cast to float32 into the original name."""
        import onnx
        import onnx_graphsurgeon as gs

        graph = self.graph
        input_ids = {id(t) for t in graph.inputs}
        for i, t in enumerate(list(graph.outputs)):
            if id(t) in self.original_f32 and t.dtype == self.f16 and id(t) not in input_ids:
                name = t.name
                self.names.discard(name)
                t.name = self.unique(f"{name}_fp16")
                self.names.add(name)
                out = gs.Variable(name, dtype=self.f32, shape=t.shape)
                self.cast_nodes.append(gs.Node("Cast", self.unique(f"{name}_cast_fp32"),
                                               {"to": onnx.TensorProto.FLOAT}, [t], [out]))
                graph.outputs[i] = out

    def summary(self) -> dict:
        """What the conversion did, for the model's metadata (`conversion_summary`); after the graph's cleanup."""
        return {
            "nodes": len(self.graph.nodes) - len(self.cast_nodes),
            "fp32_nodes_user": len(self.user_kept),
            "fp32_nodes_required": len(self.auto_kept),
            "casts_inserted": len(self.cast_nodes),
            "constants_overflowing_fp16": self.overflow[:20],
            "constant_values_flushed_to_zero": self.flushed,
            "untyped_tensors": self.untyped,
        }


def conversion_summary(model: "onnx.ModelProto") -> dict | None:
    """The summary `convert_to_fp16` stored in the model, or None if it was not converted by it."""
    for prop in model.metadata_props:
        if prop.key == _META_KEY:
            return json.loads(prop.value)
    return None


def convert_with_autocast(model: "onnx.ModelProto", **kwargs) -> "onnx.ModelProto":
    """Convert with NVIDIA ModelOpt's AutoCast (to mirror a user's own AutoCast settings).

    kwargs go to `modelopt.onnx.autocast.convert_to_mixed_precision` unchanged. Beware its defaults: nodes whose
    activations exceed `data_max` (512) stay FP32, which can hide the overflow being hunted.
    """
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as err:
        raise BackendUnavailableError(
            "AutoCast needs NVIDIA ModelOpt: pip install nvidia-modelopt onnxslim (or use the built-in FP16 conversion)"
        ) from err
    import tempfile
    from pathlib import Path

    from cp_debug.graph.onnx_files import save_onnx

    with tempfile.TemporaryDirectory(prefix="cpdebug_autocast_") as tmp:
        path = Path(tmp) / "model.onnx"
        save_onnx(model, path)
        out = convert_to_mixed_precision(onnx_path=str(path), **kwargs)
    return out


def _constant_node_values(node):
    """The numpy value of a Constant node, or None for forms we leave alone (sparse, strings)."""
    import numpy as np
    import onnx_graphsurgeon as gs

    a = node.attrs
    if isinstance(a.get("value"), gs.Constant):
        return np.asarray(a["value"].values)
    if "value_float" in a:
        return np.asarray(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.asarray(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.asarray(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.asarray(a["value_ints"], dtype=np.int64)
    return None


