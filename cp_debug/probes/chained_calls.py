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

Two things a deployed graph adds, both from weight-shared models (ALBERT's one layer run 12 times, a recurrent
refinement's update block): nodes of the module's scope that compute from constants alone (the shared weight's
`Transpose` each call repeats) are on no call's data path, so they take no part in the cuts and go with the call
that reads them; and calls whose values no graph output needs are cut away by the exporter — the last calls absent,
the one before them partly there — so the graph holds m whole calls and perhaps a part: those m are told apart and
the others said, never matched (a part's tensors are not its call's output).
"""

from __future__ import annotations

from collections import Counter

_SHAPE_ONLY = frozenset({"Shape", "Size"})  # their outputs depend on a tensor's shape, not its values


def chained_calls(graph, idx: list[int], n_calls: int) -> list[list[int] | str] | None:
    """The module's nodes `idx` (graph order) split into its `n_calls` chained calls, or None where they are not
    runs of the same ops one after another. A call the graph does not hold whole is a string saying why."""
    if n_calls < 2:
        return None
    live = _on_data_path(graph)
    chain = [i for i in idx if i in live]
    found = _periods(graph, chain, n_calls)
    if found is None:
        return None
    calls, part = found
    call_of = {i: k for k, c in enumerate(calls) for i in c}
    readers: dict[str, list[int]] = {}
    for i in chain:
        for t in graph.node[i].input:
            readers.setdefault(t, []).append(i)
    for i in idx:  # a constant's node goes with the first call that reads it
        if i not in live:
            k = min((call_of[r] for t in graph.node[i].output for r in readers.get(t, ()) if r in call_of),
                    default=None)
            if k is not None:
                calls[k].append(i)
    whole: list[list[int] | str] = [sorted(c) for c in calls]
    if part:
        whole.append(f"call {len(whole) + 1} of {n_calls} is only partly in the ONNX graph: the exporter left out "
                     "what no graph output reads, so its output is not computed")
    whole += [f"call {k} of {n_calls} is not in the ONNX graph: no graph output reads it (the exporter removed it)"
              for k in range(len(whole) + 1, n_calls + 1)]
    return whole


def _periods(graph, chain: list[int], n_calls: int) -> tuple[list[list[int]], bool] | None:
    """`chain` (a module's nodes on the data path, graph order) as m ≥ 2 whole calls of the same ops at the smallest
    period that fits, and whether a part of one more follows (its ops a subset of a whole call's); m and that part
    at most `n_calls`. None where no period fits."""
    n = len(chain)
    if n < 2:
        return None
    anc, desc = _reach(graph, chain[0], chain[-1])
    mask = 0
    for i in chain:
        mask |= 1 << i
    cuts: dict[int, int] = {}  # how many nodes of the chain a cut closes (itself and its ancestors) -> the cut
    for i in chain:
        before, after = anc[i] & mask, desc[i] & mask & ~(1 << i)
        if before | after == mask and before.bit_count() < n:
            cuts[before.bit_count()] = i
    for period in sorted(cuts):
        m, rest = divmod(n, period)
        if m < 2 or m + (rest > 0) > n_calls or any(j * period not in cuts for j in range(1, m + (rest > 0))):
            continue
        calls, done = [], 0
        for j in range(1, m + 1):
            upto = anc[cuts[j * period]] & mask if j * period < n else mask
            calls.append([i for i in chain if (upto & ~done) >> i & 1])
            done = upto
        first = Counter(graph.node[i].op_type for i in calls[0])
        if any(Counter(graph.node[i].op_type for i in c) != first for c in calls[1:]):
            continue
        part = Counter(graph.node[i].op_type for i in chain if not done >> i & 1)
        if all(first[op] >= k for op, k in part.items()):
            return calls, rest > 0
    return None


def _on_data_path(graph) -> set[int]:
    """The nodes whose value depends on a graph input's values; the others compute from initializers, Constants and
    shapes alone (a `Shape`'s dims: the exporter computes a reshape's target once and every later call reads it)."""
    consts = {t.name for t in graph.initializer}
    live_tensors = {i.name for i in graph.input if i.name not in consts}
    live = set()
    for k, node in enumerate(graph.node):
        if node.op_type not in _SHAPE_ONLY and any(t in live_tensors for t in node.input):
            live.add(k)
            live_tensors.update(t for t in node.output if t)
    return live


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


def chained_in_trace(trace, module: str, n_calls: int) -> bool:
    """Whether each call of `module` after the first read, as its first input, a value the call before it made (its
    own probe or one of its modules'): `h = block(h)`."""
    made: dict[int, set[str]] = {}
    read: dict[int, str | None] = {}
    for p in trace.order:
        scope, k = trace.scope_of(p)
        if scope == module:
            call = trace.call_of(p)
            made.setdefault(k, set()).update((p, *trace.descendants(call)))
            read[k] = trace.producers.get(p)
    return all(read.get(k) is not None and read[k] in made.get(k - 1, ()) for k in range(2, n_calls + 1))


def connected(graph, idx: list[int]) -> list[list[int]]:
    """Weakly connected groups of the nodes `idx` (edges: a tensor one of them writes and another reads)."""
    writer = {t: i for i in idx for t in graph.node[i].output if t}
    root = {i: i for i in idx}

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i in idx:
        for t in graph.node[i].input:
            if t in writer:
                root[find(i)] = find(writer[t])
    out: dict[int, list[int]] = {}
    for i in idx:
        out.setdefault(find(i), []).append(i)
    return list(out.values())
