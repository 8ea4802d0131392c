"""A module's calls told apart where each call's output is the next call's input (`h = cell(h)` in a loop).

The dynamo exporter gives every call of a module the same scope and no call index, so `naming._calls_apart` tells
calls apart by weakly connected groups of the module's nodes. Chained calls touch each other (the state one call
writes, the next reads), so they merge into one group, while a call's nodes that only meet through nodes outside the
scope (the `Split` after a GRUCell's `Gemm`) fall apart: the group count says nothing about the calls.

Here the calls are read off the data flow over the whole graph: a node of the module is a *cut* when every other
node of the module is either one of its ancestors or one of its descendants (through any node of the graph) — the
last node of a call whose output the next call reads. The k calls are the k segments between k − 1 cuts whose
ancestors hold j · (n / k) of the module's n nodes, and every segment must run the same ops (the same module, run
again); otherwise the calls are not told apart (never one call's probe onto another call's tensor).
"""

from __future__ import annotations

from collections import Counter


def chained_calls(graph, idx: list[int], n_calls: int) -> list[list[int]] | None:
    """The module's nodes `idx` (graph order) split into `n_calls` chained calls, or None where they are not
    `n_calls` runs of the same ops one after another."""
    n = len(idx)
    if n_calls < 2 or n % n_calls:
        return None
    per_call = n // n_calls
    anc, desc = _reach(graph, idx[0], idx[-1])
    mask = 0
    for i in idx:
        mask |= 1 << i
    ends: dict[int, int] = {}  # j -> the cut node closing the j-th call
    for i in idx:
        before, after = anc[i] & mask, desc[i] & mask & ~(1 << i)
        if before | after != mask:
            continue
        count = before.bit_count()
        if count % per_call == 0 and count < n:
            ends[count // per_call] = i
    if len(ends) != n_calls - 1:
        return None
    calls, done = [], 0
    for j in range(1, n_calls + 1):
        upto = anc[ends[j]] & mask if j < n_calls else mask
        calls.append([i for i in idx if (upto & ~done) >> i & 1])
        done = upto
    first = Counter(graph.node[i].op_type for i in calls[0])
    if any(Counter(graph.node[i].op_type for i in c) != first for c in calls[1:]):
        return None
    return calls


def _reach(graph, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """Per node from `lo` to `hi`, its ancestors and its descendants among them (itself included), as bit sets over
    the graph's node indices. The nodes of an ONNX graph are in topological order, so a path between two of them
    runs through nodes between them only."""
    nodes = graph.node
    writer = {t: i for i in range(lo, hi + 1) for t in nodes[i].output if t}
    readers: dict[int, list[int]] = {}
    anc = [0] * len(nodes)
    for i in range(lo, hi + 1):
        node, a = nodes[i], 1 << i
        for t in node.input:
            w = writer.get(t)
            if w is not None and w < i:
                a |= anc[w]
                readers.setdefault(w, []).append(i)
        anc[i] = a
    desc = [0] * len(nodes)
    for i in range(hi, lo - 1, -1):
        d = 1 << i
        for r in readers.get(i, ()):
            d |= desc[r]
        desc[i] = d
    return anc, desc
