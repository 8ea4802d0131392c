"""A probed graph that also runs its local-error segments: a switch at each boundary tensor its nodes read.

`switched_graph` feeds each named tensor's readers through `Where(<t>::use, <t>::ref, <t>)`, both switch inputs
overridable initializers (graph inputs with a default: False, and a scalar 0 that broadcasts to any shape): run as
it is, the graph computes what it computed (every output the same bit for bit; the tensors themselves stay outputs
where they were); fed `<t>::use` = True and `<t>::ref` the reference's value at a segment's boundaries, each node
downstream reads the reference's value there — one run gives every segment's local value, in the session that ran
the probed graph (issue 116 item 5: an INT4 file's local-error session was one more prepacking of its 4-bit
weights). `without_switches` takes them out of ONNX Runtime's optimised graph again, so that what is read of it (the
precision facts, the nodes computing the outputs) is the probed graph's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

USE, REF, READ, NODE = "::use", "::ref", "::sw", "::switch"
_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 7: np.int64, 6: np.int32, 9: np.bool_}  # TensorProto's


def switched_graph(model: "onnx.ModelProto", tensors) -> "tuple[onnx.ModelProto, tuple[str, ...]]":
    """(a copy of `model` with a switch in front of the readers of each of `tensors` that is a graph output a node
    computes and a node reads, of a type a switch holds; the tensors switched). None switched: `model` itself, as
    for a graph of IR version < 4 (its initializers listed as inputs are constants there, not overridable)."""
    from onnx import TensorProto, helper, numpy_helper

    if model.ir_version < 4:
        return model, ()
    g = model.graph
    types = {o.name: o.type.tensor_type.elem_type for o in g.output}
    read = {x for n in g.node for x in n.input}
    made = {t for n in g.node for t in n.output}
    cut = tuple(t for t in dict.fromkeys(tensors) if t in read and t in made and types.get(t) in _TYPES)
    if not cut:
        return model, ()
    from cp_debug.graph.onnx_files import copy_model

    out = copy_model(model)
    g = out.graph
    for t in cut:
        g.initializer.extend([numpy_helper.from_array(np.array(False), t + USE),
                              numpy_helper.from_array(np.zeros((), _TYPES[types[t]]), t + REF)])
        g.input.extend([helper.make_tensor_value_info(t + USE, TensorProto.BOOL, []),
                        helper.make_tensor_value_info(t + REF, types[t], None)])
    wanted, nodes = set(cut), []
    for n in g.node:
        if any(x in wanted for x in n.input):
            n.input[:] = [x + READ if x in wanted else x for x in n.input]
        nodes.append(n)
        nodes += [helper.make_node("Where", [t + USE, t + REF, t], [t + READ], name=t + NODE)
                  for t in n.output if t in wanted]
    del g.node[:]
    g.node.extend(nodes)
    return out, cut


def switch_feed(refs: dict) -> dict:
    """The switch inputs that make the readers of each tensor of `refs` (tensor -> the reference's value) read it."""
    feed = {t + USE: np.array(True) for t in refs}
    feed.update((t + REF, v) for t, v in refs.items())
    return feed


def without_switches(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` (ONNX Runtime's optimised graph of a switched one) with its switches taken out, in place, and their
    readers reading the tensor again; a graph without switches as it is."""
    g = model.graph
    if not any(n.name.endswith(NODE) and n.op_type == "Where" for n in g.node):
        return model
    keep = [n for n in g.node if not (n.name.endswith(NODE) and n.op_type == "Where")]
    for n in keep:
        n.input[:] = [x[: -len(READ)] if x.endswith(READ) else x for x in n.input]
    del g.node[:]
    g.node.extend(keep)
    switch = [i.name for i in g.input if i.name.endswith((USE, REF))]
    gone = set(switch)
    kept_inputs = [i for i in g.input if i.name not in gone]
    del g.input[:]
    g.input.extend(kept_inputs)
    kept_inits = [i for i in g.initializer if i.name not in gone]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    return model
