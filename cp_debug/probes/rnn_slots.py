"""A recurrent op's output slot behind a tensor: which of a module's tuple members an LSTM / GRU / RNN output is.

torch returns (output, (h_n, c_n)) in the order of the ONNX op's outputs Y, Y_h, Y_c; where several tensors leaving a
module's scope fit one member by shape, the slot they are computed from (through the exporter's layout ops) tells
them apart (`naming._match_outputs`)."""

from __future__ import annotations

_RNN_OPS = frozenset({"LSTM", "GRU", "RNN"})
# ops that carry a recurrent op's output on unchanged in value (the exporter's layout work around it)
_CARRIES = frozenset({"Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Cast",
                      "Flatten", "Expand"})


def rnn_slot(graph, producer: dict[str, tuple[int, int]], i: int, tensor: str, depth: int = 8) -> int | None:
    """The output slot (0 Y, 1 Y_h, 2 Y_c) of the LSTM/GRU/RNN nodes `tensor` (written by node `i`) is, or is
    carried from through layout ops (a multi-layer module's states Concat one slot of each layer's node); None
    where it is not one slot of such nodes."""
    if graph.node[i].op_type in _RNN_OPS:
        return list(graph.node[i].output).index(tensor)
    slots: set[int] = set()
    todo, seen = [(i, depth)], set()
    while todo:
        j, left = todo.pop()
        node = graph.node[j]
        if j in seen or node.op_type not in _CARRIES or left == 0:
            if j not in seen and node.op_type not in _CARRIES:
                return None
            continue
        seen.add(j)
        for t in node.input if node.op_type == "Concat" else node.input[:1]:
            src = producer.get(t)
            if src is None:
                continue
            if graph.node[src[0]].op_type in _RNN_OPS:
                slots.add(src[1])
            else:
                todo.append((src[0], left - 1))
    return slots.pop() if len(slots) == 1 else None
