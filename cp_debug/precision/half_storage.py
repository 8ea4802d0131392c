"""A float16 graph as a GPU computes it, written as a float32 graph that ONNX Runtime's CPU provider runs faithfully.

ONNX Runtime's CPU provider has few float16 kernels (none for Conv on x86). For the others it inserts Casts to
float32 around the node and then removes the Cast pairs it inserted between two such nodes, so the activations
between them stay float32: a value past 65504 never becomes inf, none is rounded to float16's grid. A GPU (the
CUDA EP, TensorRT) stores every float16 tensor in float16 and accumulates Conv/MatMul in float32. On the CPU
machine, an FP16 fix judged by the plain FP16 graph kept one node where the H100 needed 23 (measurements).

`emulate_half_storage` rewrites a graph holding float16 tensors into the float32 graph that computes what that
GPU computes: float16 constants become the same values in float32 (exact), every node output that was float16
is followed by an explicit Cast float32 → float16 → float32 (round to nearest even, ±inf past 65504 — ONNX Runtime
keeps such a pair in a float32 graph), and Casts to float16 become Casts to float32 followed by that rounding.
Graph inputs and outputs keep their names and types (a float16 input is widened after it, a float16 output is
the rounded value in float16), so a runner, its feeds and its probe names do not change. Nodes kept in float32
(their Casts around them included) compute as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx

SUFFIX = "__cpdebug_half"  # names this module adds end with it


@dataclass(frozen=True)
class HalfStorage:
    """The emulating graph and what was done: float16 tensors rounded after their node, float16 constants widened,
    Casts to float16 turned into rounding, float16 graph inputs widened."""

    model: "onnx.ModelProto"
    rounded: int
    constants: int
    casts: int
    inputs: int

    def to_json(self) -> dict:
        return {"rounded_tensors": self.rounded, "widened_constants": self.constants, "casts_to_fp16": self.casts,
                "widened_inputs": self.inputs}


    @property
    def changed(self) -> bool:
        """Whether the graph held anything float16 (else the emulation is the graph itself)."""
        return bool(self.rounded or self.constants or self.casts or self.inputs)


def holds_half_constants(model: "onnx.ModelProto") -> bool:
    """float16 weights or a Cast to float16 in `model`: a graph converted to, or deployed in, FP16 (no shape
    inference; an untyped intermediate float16 tensor alone is not seen)."""
    fp16 = _fp16()
    return any(t.data_type == fp16 for t in model.graph.initializer) or any(
        a.name == "to" and a.i == fp16 for n in model.graph.node if n.op_type == "Cast" for a in n.attribute)


def widen_half(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """The float32 twin of a graph holding float16 (a user's FP16 file): the same nodes and tensor names, float16
    constants widened (exact), Casts to float16 made Casts to float32, nothing rounded — what the file computes in
    FP32, the reference its own segments are explained against (`segment_why.py`): a value past 65504 stays its
    FP32 value there instead of inf."""
    return emulate_half_storage(model, rounding=False).model


def emulate_half_storage(model: "onnx.ModelProto", rounding: bool = True) -> HalfStorage:
    """The float32 graph computing what `model` (holding float16 tensors) computes on a float16 machine; `model` is
    not modified. Control-flow subgraphs are left as they are. Nothing float16 in `model`: `.changed` is False.
    `rounding=False`: no rounding after any node, float16 graph inputs and outputs declared float32 (`widen_half`)."""
    import onnx
    from onnx import helper

    from cp_debug.graph.onnx_files import copy_model, copy_tensor, keep

    fp16, fp32 = _fp16(), onnx.TensorProto.FLOAT
    if rounding and _emulated_already(model):
        return HalfStorage(model, 0, 0, 0, 0)
    half, dtypes = _half_tensors(model)
    out = copy_model(model)
    g = out.graph
    constants = 0
    for t in g.initializer:
        if t.data_type == fp16:
            name = t.name
            copy_tensor(_widened(t), t)
            t.name = name  # a stored one's widening is made once, under the first name it had
            constants += 1
    graph_outputs = {o.name for o in g.output}
    nodes, casts = [], 0
    widened_inputs = [i.name for i in g.input if i.type.tensor_type.elem_type == fp16]
    renames = {name: name + SUFFIX + "_in" for name in widened_inputs}
    for name in widened_inputs:
        nodes.append(helper.make_node("Cast", [name], [renames[name]], name=name + SUFFIX + "_widen", to=fp32))
    rounded = 0
    for node in g.node:
        for i, x in enumerate(node.input):
            if x in renames:
                node.input[i] = renames[x]
        constants += _widen_attributes(node, fp16, fp32)
        if node.op_type == "Cast" and _attr(node, "to") == fp16:
            _set_attr(node, "to", fp32)
            casts += 1
        nodes.append(node)
        if node.op_type in ("Constant", "ConstantOfShape") and not graph_outputs.intersection(node.output):
            continue  # its value is a float16 value already: exact in float32, nothing to round (as a graph output
            # it is Cast back to the float16 its output is declared: a segment ending at ddddocr's LSTM's zeros)
        for k, t in enumerate(node.output):
            if t not in half or not rounding:
                continue
            raw = t + SUFFIX + "_raw"
            node.output[k] = raw
            if t in graph_outputs:  # the output stays float16 under its name; readers take the rounded float32
                renames[t] = t + SUFFIX + "_rounded"
                nodes.append(helper.make_node("Cast", [raw], [t], name=t + SUFFIX + "_round", to=fp16))
                nodes.append(helper.make_node("Cast", [t], [renames[t]], name=t + SUFFIX + "_widen", to=fp32))
            else:
                mid = t + SUFFIX + "_fp16"
                nodes.append(helper.make_node("Cast", [raw], [mid], name=t + SUFFIX + "_round", to=fp16))
                nodes.append(helper.make_node("Cast", [mid], [t], name=t + SUFFIX + "_widen", to=fp32))
            rounded += 1
    del g.node[:]
    g.node.extend(nodes)
    if not rounding:
        _float32_edges(g, renames, fp16, fp32)
    kept = [v for v in g.value_info if dtypes.get(v.name) != fp16]
    del g.value_info[:]
    g.value_info.extend(kept)
    if rounding:
        out.metadata_props.add(key=_MARK, value=str(_half_casts(out)))
    return HalfStorage(keep(out), rounded, constants, casts, len(widened_inputs))  # keep: float32 past 2 GiB


_MARK = "cp_debug.half_storage"  # an emulating graph's: the number of its Casts to float16 (its rounding)


def _half_casts(model) -> int:
    fp16 = _fp16()
    return sum(1 for n in model.graph.node if n.op_type == "Cast" and _attr(n, "to") == fp16)


def _emulated_already(model) -> bool:
    """`model` is an emulating graph (its float16 in rounding Casts alone), outputs added or not: the graph a runner
    ran, screened (`bisect/stages/screen.py`), is run as it is, not emulated again (1.3-1.5 s of a 30-layer × 576
    Llama's screen, for the same values)."""
    mark = next((p.value for p in model.metadata_props if p.key == _MARK), None)
    return mark is not None and mark == str(_half_casts(model)) and not any(
        t.data_type == _fp16() for t in model.graph.initializer)


def _float32_edges(g, renames: dict[str, str], fp16: int, fp32: int) -> None:
    """The twin's edges (`widen_half`): float16 inputs taken as float32 as they are (their widening Casts dropped),
    float16 outputs declared float32."""
    for v in [*g.input, *g.output]:
        if v.type.tensor_type.elem_type == fp16:
            v.type.tensor_type.elem_type = fp32
    back = {r: k for k, r in renames.items()}
    for n in g.node:
        for i, x in enumerate(n.input):
            if x in back:
                n.input[i] = back[x]
    kept = [n for n in g.node if not n.name.endswith(SUFFIX + "_widen")]
    del g.node[:]
    g.node.extend(kept)


def _half_tensors(model) -> tuple[set[str], dict[str, int]]:
    """(names of float16 tensors that nodes compute, every known tensor's elem type)."""
    from cp_debug.graph.model import inferred_graph

    g = inferred_graph(model)  # untypable graphs: what the file declares
    dtypes = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    for node in g.node:  # Constants are typed by their value
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    dtypes[node.output[0]] = a.t.data_type
    produced = {t for n in g.node for t in n.output}
    return {t for t in produced if dtypes.get(t) == _fp16()}, dtypes


def _widened(t: "onnx.TensorProto") -> "onnx.TensorProto":
    """A float16 tensor's float32 values; a stored one's stored in turn, made once a process (`weight_store`)."""
    from onnx import numpy_helper

    from cp_debug.graph import weight_store
    from cp_debug.graph.onnx_files import store_array

    if weight_store.is_stored(t):  # large: ONNX Runtime's Cast, exact (numpy's conversion: 2.2 s at 1.1 GB)
        from cp_debug.half import to_fp32

        return weight_store.derived(t, "float32", lambda: store_array(to_fp32(weight_store.values(t)), t.name))
    return numpy_helper.from_array(numpy_helper.to_array(t).astype("float32"), t.name)


def _widen_attributes(node, fp16: int, fp32: int) -> int:
    """float16 tensor attributes (Constant's value, ConstantOfShape's value) and dtype attributes → float32."""
    from onnx import numpy_helper

    n = 0
    for a in node.attribute:
        if a.HasField("t") and a.t.data_type == fp16:
            a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype("float32"), a.t.name))
            n += 1
        elif a.name == "dtype" and a.i == fp16:
            a.i = fp32
    return n


def _attr(node, name: str):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return None


def _set_attr(node, name: str, value: int) -> None:
    for a in node.attribute:
        if a.name == name:
            a.i = value


def _fp16() -> int:
    import onnx

    return onnx.TensorProto.FLOAT16
