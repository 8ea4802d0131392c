"""Two graphs of one network paired node by node (`align_nodes`): grown from the aligned anchors, the nodes both name
alike and the interface, across what a precision or another exporter writes in between — Casts and Q/DQ pairs on
an activation (`_Graph.source` / `sinks`), a commutative op's inputs in the other order. What stays unpaired on
either side is a graph difference (`graph_diff.py`)."""

from __future__ import annotations

from typing import Any

_Graph = Any  # foreign._Graph: what the alignment reads of a graph (producers, consumers, constants, anchors)


def align_nodes(a: _Graph, b: _Graph, anchors: dict[int, int]) -> dict[int, int]:
    """Every node of `a` → its counterpart in `b`, grown from the aligned anchors, the nodes both graphs name alike
    (same name and op type) and the interface (inputs and outputs keep their names): a pair's producers pair where
    they have one op type, and its consumers where exactly one on each side takes the same output in the same
    slot with the same op type. An inserted, dropped or replaced node is reached by neither and stays unpaired."""
    nodes_a, nodes_b = a.model.graph.node, b.model.graph.node
    pair: dict[int, int] = {}
    taken: set[int] = set()
    todo: list[int] = []

    def add(i: int, j: int) -> None:
        if i not in pair and j not in taken and nodes_a[i].op_type == nodes_b[j].op_type:
            pair[i] = j
            taken.add(j)
            todo.append(i)

    for i, j in anchors.items():
        add(i, j)
    named = {n.name: j for j, n in enumerate(nodes_b) if n.name and n.op_type != "Constant"}
    for i, n in enumerate(nodes_a):
        if n.name and n.op_type != "Constant" and n.name in named:
            add(i, named[n.name])
    for t in a.inputs & b.inputs:
        _pair_consumers(a, b, t, t, add, pair, taken)
    for o in a.model.graph.output:
        if o.name in b.producer and o.name in a.producer:
            add(a.producer[o.name][0], b.producer[o.name][0])
    while todo:
        i = todo.pop()
        na, nb = nodes_a[i], nodes_b[pair[i]]
        for ta, tb in _input_pairs(na, nb, a, b):
            ta, tb = a.source(ta), b.source(tb)  # past the Casts and Q/DQ pairs a precision put in between
            if ta in a.producer and tb in b.producer and a.producer[ta][1] == b.producer[tb][1]:
                add(a.producer[ta][0], b.producer[tb][0])
        for ta, tb in zip(na.output, nb.output):
            if ta and tb:
                _pair_consumers(a, b, ta, tb, add, pair, taken)
    return pair


def _input_pairs(na, nb, a: _Graph, b: _Graph) -> list[tuple[str, str]]:
    """The inputs of two paired nodes that correspond: slot by slot; for a commutative op whose slots hold other
    kinds of value (TorchScript writes a Linear's `Add(bias, MatMul)`, the dynamo exporter `Add(MatMul, bias)`), each
    input with the one input on the other side made by the same op type (or the same kind: a weight, an input)."""
    pairs = list(zip(na.input, nb.input))
    if na.op_type not in _ANY_ORDER or len(na.input) != len(nb.input):
        return pairs

    def kind(g: _Graph, t: str) -> str:
        if t in g.producer:
            return g.model.graph.node[g.producer[t][0]].op_type
        return "constant" if t in g.constants else "input"

    ka, kb = [kind(a, t) for t in na.input], [kind(b, t) for t in nb.input]
    if ka == kb:
        return pairs
    return [(ta, nb.input[kb.index(k)]) for ta, k in zip(na.input, ka) if ka.count(k) == 1 and kb.count(k) == 1]


# ops whose inputs may come in either order: pairing reads them by what makes each input, not by slot
_ANY_ORDER = frozenset({"Add", "Mul", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor", "Equal"})


def _pair_consumers(a: _Graph, b: _Graph, ta: str, tb: str, add, pair: dict[int, int], taken: set[int]) -> None:
    """Pair the unpaired consumers of `ta` (in `a`) and `tb` (in `b`) that are alone in taking it in their slot with
    their op type (any slot of a commutative op)."""
    def groups(g: _Graph, t: str, done) -> dict[tuple, list[int]]:
        out: dict[tuple, list[int]] = {}
        for j, slot in g.sinks(t):
            if j not in done:
                op = g.model.graph.node[j].op_type
                out.setdefault((op, None if op in _ANY_ORDER else slot), []).append(j)
        return out

    ga, gb = groups(a, ta, pair), groups(b, tb, taken)
    for key, mine in ga.items():
        theirs = gb.get(key, [])
        if len(set(mine)) == 1 and len(set(theirs)) == 1:
            add(mine[0], theirs[0])
