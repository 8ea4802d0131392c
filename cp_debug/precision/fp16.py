"""FP16 conversion of an ONNX graph, our own, through onnx-graphsurgeon.

Everything is converted by default. There is deliberately no AutoCast-style rule that keeps nodes whose
activations exceed some magnitude in FP32: that rule hides the very overflow a user is hunting. What stays in
FP32 is explicit:
  * nodes named in `keep_fp32_nodes` and op types in `keep_fp32_op_types` (the user's block list);
  * ops that ONNX defines for float32 only (`FP32_ONLY_OPS`) and float32-only input slots (`FP32_ONLY_SLOTS`,
    e.g. Resize's scales), together with the float arithmetic that only feeds them or a Cast to an integer type
    (shape and coordinate math: float16 holds integers exactly only up to 2048, so 2049·2 would become 4096).
Graph input and output names never change (probe tensors exposed as outputs before conversion keep their
names): with `keep_io_types` a float32 input is Cast to float16 after it, and a float32 output is produced by a
Cast from a renamed float16 tensor. Value infos of intermediate tensors are cleared and re-inferred.
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Iterable

from cp_debug.errors import BackendUnavailableError, BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# Ops whose float inputs ONNX allows as float32 only (no float16 type in the op schema), or whose float input is
# an int8 scale (Q/DQ before opset 19). Kept in FP32 whole.
FP32_ONLY_OPS = frozenset({
    "Range", "NonMaxSuppression", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
})
# Input slots that must be float32 whatever the node computes in: (op type → slot indices).
FP32_ONLY_SLOTS: dict[str, tuple[int, ...]] = {
    "Resize": (2,),  # scales: tensor(float) only
    "Upsample": (1,),  # scales: tensor(float) only
}
# Input slots that take any dtype: no Cast is inserted in front of them.
ANY_DTYPE_SLOTS: dict[str, tuple[int, ...]] = {
    "Cast": (0,), "CastLike": (0,), "Shape": (0,), "Size": (0,),
}
# Ops with control-flow subgraphs are not converted (see convert_to_fp16).
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
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
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import export_like, infer_types

    f32, f16 = np.dtype(np.float32), np.dtype(np.float16)
    graph = gs.import_onnx(infer_types(model))
    graph.toposort()
    if any(n.op in _CONTROL_FLOW for n in graph.nodes):
        raise BadInputError(
            "FP16 conversion does not handle control flow (If/Loop/Scan): fold it first, e.g. "
            "`polygraphy surgeon sanitize model.onnx --fold-constants -o folded.onnx`"
        )
    keep_nodes = set(keep_fp32_nodes)
    keep_ops = set(keep_fp32_op_types)
    node_names = {n.name for n in graph.nodes}
    unknown = sorted(keep_nodes - node_names)
    if unknown:
        some = ", ".join(repr(n) for n in list(node_names)[:5])
        raise BadInputError(f"keep-FP32 node(s) {', '.join(map(repr, unknown[:5]))} not in the graph; node names look like {some}")

    names: set[str] = set(graph.tensors().keys()) | node_names

    def unique(base: str) -> str:
        name, k = base, 1
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        return name

    graph_outputs = {id(t) for t in graph.outputs}

    # 1. Constant nodes → initializers, so every constant is handled the same way (the tensor keeps its name).
    for node in graph.nodes:
        if node.op == "Constant" and len(node.outputs) == 1 and id(node.outputs[0]) not in graph_outputs:
            values = _constant_node_values(node)
            if values is not None:
                out = node.outputs[0]
                out.to_constant(values)
                node.outputs.clear()
    graph.cleanup()

    # 2. Which nodes compute in FP32: the user's list, FP32-only ops, and the shape arithmetic feeding them.
    consumers = _consumer_map(graph)
    user_kept = {id(n) for n in graph.nodes if n.name in keep_nodes or n.op in keep_ops}
    auto_kept: set[int] = set()
    for node in reversed(graph.nodes):
        if id(node) in user_kept:
            continue
        if node.op in FP32_ONLY_OPS or node.op == "Constant":  # Constant nodes left by step 1 stay as they are
            auto_kept.add(id(node))
            continue
        needs32 = other = 0
        for out in node.outputs:
            if out.dtype != f32:
                continue
            for cons, slot in consumers.get(id(out), ()):
                if slot in FP32_ONLY_SLOTS.get(cons.op, ()) or id(cons) in auto_kept or _casts_to_int(cons):
                    needs32 += 1
                elif slot in ANY_DTYPE_SLOTS.get(cons.op, ()):
                    continue  # Shape/Cast take any dtype: no preference either way
                else:
                    other += 1
        if needs32 and not other:
            auto_kept.add(id(node))
    fp32_nodes = user_kept | auto_kept

    def wanted(node, slot: int):
        """The dtype a float input slot needs; None when any dtype will do."""
        if slot in ANY_DTYPE_SLOTS.get(node.op, ()):
            return None
        if id(node) in fp32_nodes or slot in FP32_ONLY_SLOTS.get(node.op, ()):
            return f32
        return f16

    # 3. Retype: graph inputs, node outputs, dtype attributes, constant-producing attributes.
    original_f32 = {id(t) for t in graph.tensors().values() if isinstance(t, gs.Variable) and t.dtype == f32}
    if not keep_io_types:
        for t in graph.inputs:
            if t.dtype == f32:
                t.dtype = f16
    untyped = 0
    for node in graph.nodes:
        if id(node) in fp32_nodes:
            continue
        if node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.FLOAT:
            node.attrs["to"] = onnx.TensorProto.FLOAT16
        if node.attrs.get("dtype") == onnx.TensorProto.FLOAT:
            node.attrs["dtype"] = onnx.TensorProto.FLOAT16
        if node.op == "ConstantOfShape":
            value = node.attrs.get("value")
            if value is None:  # default: float32 zero
                node.attrs["value"] = gs.Constant(unique(f"{node.name}_value"), np.zeros([1], dtype=f16))
            elif isinstance(value, gs.Constant) and value.dtype == f32:
                node.attrs["value"] = gs.Constant(value.name, np.asarray(value.values, dtype=f16))
        for out in node.outputs:
            if out.dtype == f32:
                out.dtype = f16
            elif out.dtype is None and out.name:
                untyped += 1

    # 4. Constants: convert in place when only FP16 consumers read them; duplicate when both kinds do.
    overflow: list[str] = []
    flushed = 0
    const_uses: dict[int, list] = {}
    for node in graph.nodes:
        for slot, t in enumerate(node.inputs):
            if isinstance(t, gs.Constant) and t.dtype == f32 and t.export_dtype == f32:
                const_uses.setdefault(id(t), []).append((node, slot, t))
    fp16_copies: dict[int, gs.Constant] = {}
    for uses in const_uses.values():
        const = uses[0][2]
        want16 = [(n, s) for n, s, _ in uses if wanted(n, s) == f16]
        if not want16:
            continue
        values = np.asarray(const.values)
        half = values.astype(f16)
        with np.errstate(invalid="ignore"):
            if (np.isfinite(values) & ~np.isfinite(half)).any():
                overflow.append(const.name)
            flushed += int(((values != 0) & (half == 0)).sum())
        keep32 = any(wanted(n, s) == f32 for n, s, _ in uses) or id(const) in graph_outputs
        if keep32:
            copy = fp16_copies.get(id(const)) or gs.Constant(unique(f"{const.name}_fp16"), half)
            fp16_copies[id(const)] = copy
            for n, s in want16:
                n.inputs[s] = copy
        else:
            const.values = half

    # 5. Casts where a float input's dtype differs from what its slot needs (graph inputs, kept nodes, scales).
    casts: dict[tuple[int, str], gs.Variable] = {}
    cast_nodes: list[gs.Node] = []

    def cast(t, dtype):
        key = (id(t), dtype.name)
        if key not in casts:
            suffix = "fp16" if dtype == f16 else "fp32"
            out = gs.Variable(unique(f"{t.name}_{suffix}"), dtype=dtype, shape=t.shape)
            to = onnx.TensorProto.FLOAT16 if dtype == f16 else onnx.TensorProto.FLOAT
            cast_nodes.append(gs.Node("Cast", unique(f"{t.name}_cast_{suffix}"), {"to": to}, [t], [out]))
            casts[key] = out
        return casts[key]

    for node in list(graph.nodes):
        for slot, t in enumerate(node.inputs):
            if t is None or not t.name or t.dtype not in (f32, f16):
                continue
            need = wanted(node, slot)
            if need is not None and t.dtype != need:
                node.inputs[slot] = cast(t, need)

    # 6. Graph outputs keep their names and float32 type: rename the fp16 tensor, Cast into the original name.
    if keep_io_types:
        input_ids = {id(t) for t in graph.inputs}
        for i, t in enumerate(list(graph.outputs)):
            if id(t) in original_f32 and t.dtype == f16 and id(t) not in input_ids:
                name = t.name
                names.discard(name)
                t.name = unique(f"{name}_fp16")
                names.add(name)
                out = gs.Variable(name, dtype=f32, shape=t.shape)
                cast_nodes.append(gs.Node("Cast", unique(f"{name}_cast_fp32"), {"to": onnx.TensorProto.FLOAT}, [t], [out]))
                graph.outputs[i] = out

    graph.nodes.extend(cast_nodes)
    graph.cleanup().toposort()
    converted = export_like(graph, model)
    del converted.graph.value_info[:]  # stale float32 types of intermediates: re-inferred below
    converted = infer_types(converted)

    summary = {
        "nodes": len(graph.nodes) - len(cast_nodes),
        "fp32_nodes_user": len(user_kept),
        "fp32_nodes_required": len(auto_kept),
        "casts_inserted": len(cast_nodes),
        "constants_overflowing_fp16": overflow[:20],
        "constant_values_flushed_to_zero": flushed,
        "untyped_tensors": untyped,
    }
    entry = converted.metadata_props.add()
    entry.key, entry.value = _META_KEY, json.dumps(summary)
    if overflow:
        warnings.warn(f"FP16 conversion: {len(overflow)} constant(s) overflow float16 to inf, e.g. {overflow[0]!r}", stacklevel=2)
    if untyped:
        warnings.warn(f"FP16 conversion: {untyped} tensor(s) have no inferred type; Casts may be missing around them", stacklevel=2)
    return converted


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

    import onnx

    with tempfile.TemporaryDirectory(prefix="cpdebug_autocast_") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
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


def _casts_to_int(node) -> bool:
    """A Cast to a non-float type: the float arithmetic in front of it is index/shape math."""
    import onnx

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    return node.op == "Cast" and node.attrs.get("to") not in floats


def _consumer_map(graph) -> dict[int, list]:
    cons: dict[int, list] = {}
    for node in graph.nodes:
        for slot, t in enumerate(node.inputs):
            if t is not None:
                cons.setdefault(id(t), []).append((node, slot))
    return cons
