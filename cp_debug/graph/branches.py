"""An `If` whose condition the sample decides, run as the branch it takes.

A file's control flow hides its layers: an `If` node's branches are subgraphs, so probes, cuts and an FP16 or INT8
conversion see one node where silero-vad holds its whole network (an LSTM in each of a 16 kHz and an 8 kHz branch).
For one sample the condition is a value: computed (onnx's reference evaluator, on the nodes it depends on), the
taken branch's nodes are put in the If's place (its outputs by Identity into the If's names, so every name outside
stays), which is the same computation for this sample, and every layer in it is a layer of the graph. What cannot
be decided (a condition that is not computed from the inputs, a Loop, a Scan) stays as it is, and is said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

_SUBGRAPH_OPS = ("If", "Loop", "Scan")


@dataclass(frozen=True)
class Inlined:
    model: "onnx.ModelProto"
    taken: tuple[str, ...] = ()  # "If_0: then_branch (113 nodes)" a branch inlined
    kept: tuple[str, ...] = ()  # "Loop_3 (Loop)" control flow left whole: compared at its outputs only
    said: list[str] = field(default_factory=list)


def holds_control_flow(model: "onnx.ModelProto") -> bool:
    return any(n.op_type in _SUBGRAPH_OPS for n in model.graph.node)


def inline_taken_branches(model: "onnx.ModelProto", feed: "dict[str, np.ndarray]", rounds: int = 8) -> Inlined:
    """`model` with each top-level If whose condition `feed` decides replaced by the branch it takes (nested ones
    in turn, up to `rounds` deep); a model without control flow comes back as it is."""
    if not holds_control_flow(model):
        return Inlined(model)
    taken: list[str] = []
    for _ in range(rounds):
        model, now = _inline_once(model, feed)
        if not now:
            break
        taken += now
    kept = tuple(f"{n.name or n.output[0]} ({n.op_type})" for n in model.graph.node if n.op_type in _SUBGRAPH_OPS)
    said = []
    if taken:
        said.append(f"control flow run as this sample takes it: {'; '.join(taken[:4])}"
                    f"{' …' if len(taken) > 4 else ''} inlined, so the layers inside are probed (another sample "
                    "may take another branch)")
    if kept:
        said.append(f"{len(kept)} control-flow node(s) kept whole, compared at their outputs only (the layers "
                    f"inside are not probed): {', '.join(kept[:4])}")
    return Inlined(model, tuple(taken), kept, said)


def _inline_once(model: "onnx.ModelProto", feed: dict) -> "tuple[onnx.ModelProto, list[str]]":
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import cleanup, export_like

    graph = gs.import_onnx(model)
    ifs = [n for n in graph.nodes if n.op == "If" and isinstance(n.inputs[0], gs.Variable)]
    if not ifs:
        return model, []
    conds = _conditions(model, [n.inputs[0].name for n in ifs], feed)
    names = {t for t in graph.tensors()} | {n.name for n in graph.nodes}
    outer = {id(t) for t in graph.tensors().values()}
    taken = []
    for node in ifs:
        cond = conds.get(node.inputs[0].name)
        if cond is None:
            continue
        which = "then_branch" if cond else "else_branch"
        branch = node.attrs[which]
        _rename_clashes(branch, names, outer)
        graph.nodes.extend(branch.nodes)
        for made, out in zip(branch.outputs, list(node.outputs)):
            graph.nodes.append(gs.Node("Identity", _unique(f"{node.name}_{which}_out", names), inputs=[made],
                                       outputs=[out]))
        node.outputs.clear()
        taken.append(f"{node.name or 'If'}: {which} ({len(branch.nodes)} nodes)")
    if not taken:
        return model, []
    cleanup(graph).toposort()
    out = export_like(graph, model)
    del out.graph.value_info[:]  # a branch's stale hints (shapes traced at another size) re-inferred by the runtime
    return out, taken


def _conditions(model: "onnx.ModelProto", conds: list[str], feed: dict) -> dict[str, bool]:
    """Each condition tensor's value on `feed`, where the nodes it depends on compute it; the others left out."""
    import numpy as np
    import onnx_graphsurgeon as gs
    from onnx.reference import ReferenceEvaluator

    from cp_debug.graph.model import cleanup, export_like

    found = {}
    for name in dict.fromkeys(conds):
        graph = gs.import_onnx(model)
        tensor = graph.tensors().get(name)
        if tensor is None:
            continue
        if tensor.dtype is None:
            tensor.dtype = np.bool_  # an If's condition is a bool
        graph.outputs = [tensor]
        cleanup(graph)
        if any(n.op in _SUBGRAPH_OPS for n in graph.nodes) or len(graph.nodes) > 200:
            continue  # a condition computed by the network itself: decided at run time, not here
        graph.inputs = [t for t in graph.inputs if t.name in feed]
        try:
            cut = export_like(graph, model)
            del cut.graph.value_info[:]
            value = ReferenceEvaluator(cut).run(None, {t.name: np.asarray(feed[t.name]) for t in graph.inputs})[0]
        except Exception:  # noqa: BLE001 - a condition the evaluator cannot compute stays a runtime decision
            continue
        if np.asarray(value).size == 1:
            found[name] = bool(np.asarray(value).reshape(()))
    return found


def _rename_clashes(branch, names: set[str], outer: set[int]) -> None:
    """Tensors and nodes made inside `branch` whose names the outer graph already uses get fresh names (tensors
    are objects: their readers follow); outer-scope tensors read inside are the outer graph's own objects."""
    for t in branch.tensors().values():
        if id(t) not in outer and t.name in names:
            t.name = _unique(t.name, names)
        names.add(t.name)
    for n in branch.nodes:
        n.name = _unique(n.name or n.op, names) if (n.name in names or not n.name) else n.name
        names.add(n.name)


def _unique(base: str, names: set[str]) -> str:
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    names.add(name)
    return name
