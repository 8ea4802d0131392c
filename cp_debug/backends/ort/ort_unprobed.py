"""Whether exposing probes changed what ONNX Runtime runs (issue 118, item 2): the probing check at no extra run.

A probe tensor exposed as a graph output can keep ORT from fusing the nodes around it (a fusion removes the tensors
inside it, and a graph output must stay). Where ORT's optimised graph of the stage without its probe outputs holds
the same nodes computing the stage's outputs as the probed one's — each node's op, domain, inputs, outputs and
attributes — the two sessions run the same kernels on the same values: the probed run's outputs are the graph as
deployed's, and no second whole-stage run is needed (`bisect/stages/unprobed.py`). The graph without probes is the
runner's own prepared graph (its precision transform made once) with the probe outputs dropped; only its session is
made, to read its optimised graph, and never run. Where the nodes differ, or a graph is too large to dump, the graph
as deployed is run as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cp_debug.graph.bodies import bodies

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def live_nodes(opt: "onnx.ModelProto", outputs: Sequence[str]) -> tuple:
    """The nodes of ORT's optimised graph `opt` that compute `outputs` (the stage's own outputs, not the probes),
    each as (op, domain, inputs, outputs, attributes), sorted: equal for two graphs that compute them alike."""
    producer = {t: n for n in opt.graph.node for t in n.output if t}
    seen: set[int] = set()
    todo = [producer[t] for t in outputs if t in producer]
    live = []
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        live.append(node)
        todo.extend(producer[t] for t in node.input if t in producer)
        for g in bodies(node):  # a subgraph's (If, Loop) outer-scope inputs
            todo.extend(producer[t] for n in g.node for t in n.input if t in producer)
    return tuple(sorted((n.op_type, n.domain, tuple(n.input), tuple(n.output),
                         tuple(sorted((a.name, a.SerializeToString()) for a in n.attribute))) for n in live))


def without_probes(model: "onnx.ModelProto", outputs: Sequence[str]) -> "onnx.ModelProto":
    """A copy of `model` whose graph outputs are `outputs` alone (the probe outputs dropped; what fed only them is
    left to ORT, which removes it)."""
    import onnx

    keep = [o for o in model.graph.output if o.name in set(outputs)]
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    del plain.graph.output[:]
    plain.graph.output.extend(keep)
    return plain
