"""A probe tensor found under its own name in a user's file written from our own export (issue 115, probes missing).

onnxconverter-common's float16 and ONNX Runtime's `quantize_static` keep every tensor and node name of the graph they
convert. Where the structural chain cannot reach a tensor — a recurrence written out as ops (a GRU cell unrolled over
20 greedy decoding steps: its state `h = (1 − z)·n + z·h` runs back through `Sub` / `Mul` / `Add` only, past
`MAX_CHAIN` ops from any weighted node) — the file's tensor of the same name is ours where the same op type writes
it from tensors of the same names (read through the deployment's Casts and Q/DQ pairs): a renamed or rewired file
matches nothing here and stays unmapped with the chain's reason (g2p_en's decoder: 37 of 426 probes were missing)."""

from __future__ import annotations

from typing import Protocol


class _Side(Protocol):  # foreign._Graph: what is read of each side
    model: object
    producer: dict[str, tuple[int, int]]

    def computed(self, t: str) -> bool: ...

    def source(self, t: str) -> str: ...


def same_name(a: _Side, b: _Side, t: str) -> str | None:
    """`t` where `b` (the deployed file) writes it as `a` (our export) does: the same node output slot of the same op
    type, its computed inputs the same names once the deployment's precision steps are looked through; else None."""
    i, j = a.producer.get(t), b.producer.get(t)
    if i is None or j is None or i[1] != j[1]:
        return None
    ours, theirs = a.model.graph.node[i[0]], b.model.graph.node[j[0]]  # type: ignore[attr-defined]
    if ours.op_type != theirs.op_type:
        return None
    read = [x for x in ours.input if a.computed(x)]
    return t if read and read == [b.source(x) for x in theirs.input if b.computed(x)] else None
