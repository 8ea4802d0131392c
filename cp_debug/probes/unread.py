"""A module output the model never reads, said as such instead of "missing" (issue 115, item 4: an LSTM's outputs
and states mapped): its value is written by the module's ONNX nodes and read by no node, nor a graph output — a GRU's
sequence output in the exporter's own layout (g2p's encoder), or a stacked recurrent state torch returns and the model
drops (BeatNet's 2-layer LSTM: `h_n` / `c_n` [2, 1, 150] are each layer's ONNX `Y_h` / `Y_c` [1, 1, 150], the export's
`Concat` of them pruned, so no tensor of the probe's shape exists; torch.export's graph writes no state at all)."""

from __future__ import annotations

import math


def never_read(graph, idx: list[int], consumers: dict, graph_outputs: set[str], shapes: dict,
               want: tuple | None) -> str | None:
    """Why a probe has no tensor, where the module's nodes `idx` write one of its size that nothing reads, or one per
    layer that stack to its shape (along the first axis); None otherwise."""
    if want is None:
        return None

    def unread(t: str) -> bool:
        return bool(t) and t not in graph_outputs and not consumers.get(t) and shapes.get(t) is not None \
            and None not in shapes[t]

    size = math.prod(want)
    alone = [t for i in idx for t in graph.node[i].output if unread(t) and math.prod(shapes[t]) == size]
    if alone:
        return (f"the model never reads this output: its ONNX tensor {alone[-1]} {list(shapes[alone[-1]])} is "
                "written and read by no node (nor a graph output), so it is not compared")
    slots: dict[tuple[str, int], list[str]] = {}  # (op, output slot) -> the unread tensors of that slot
    for i in idx:
        for k, t in enumerate(graph.node[i].output):
            if unread(t):
                slots.setdefault((graph.node[i].op_type, k), []).append(t)
    stacked = [(key, ts) for key, ts in slots.items() if len(ts) > 1 and len({tuple(shapes[t]) for t in ts}) == 1
               and tuple(shapes[ts[0]][1:]) == tuple(want[1:]) and len(want) == len(shapes[ts[0]])
               and sum(shapes[t][0] for t in ts) == want[0]]
    if not stacked:
        return _stateless(graph, idx)
    said = "; ".join(f"{', '.join(ts)} (output {k} of its {len(ts)} {op} nodes)" for (op, k), ts in stacked)
    return (f"the model never reads this output: its value is one ONNX tensor {list(shapes[stacked[0][1][0]])} per "
            f"layer, stacked to {list(want)} — {said} — each written and read by no node (nor a graph output), so it "
            "is not compared")


def _stateless(graph, idx: list[int]) -> str | None:
    """The module's recurrent nodes write no state output (`Y_h`, `Y_c`: torch.export's graph leaves out what no node
    reads), so a state torch returns has no tensor; None where one writes them, or there is none."""
    rnn = [graph.node[i] for i in idx if graph.node[i].op_type in ("LSTM", "GRU", "RNN")]
    if not rnn or any(len(n.output) > 1 and any(n.output[1:]) for n in rnn):
        return None
    return (f"the model never reads this output: its {len(rnn)} {rnn[0].op_type} node(s) write no state output "
            "(Y_h / Y_c: the export leaves out what no node reads), so it is not compared")
