"""The graphs an ONNX graph holds (If / Loop / Scan bodies, nested), read one way by every walker of cp_debug.

A body is a node attribute of type GRAPH (`g`) or GRAPHS (`graphs`); its nodes may read the outer scope's tensors by
name and hold bodies of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["all_nodes", "bodies", "graphs"]


def bodies(node: "onnx.NodeProto") -> list["onnx.GraphProto"]:
    """The bodies `node` holds itself (not those nested in them), in attribute order."""
    out = []
    for a in node.attribute:
        if a.HasField("g"):
            out.append(a.g)
        out.extend(a.graphs)
    return out


def graphs(graph: "onnx.GraphProto", depth: int = 0) -> Iterator[tuple[int, "onnx.GraphProto"]]:
    """`graph` and every body in it, nested, each with how deep it lies (0: `graph`)."""
    yield depth, graph
    for n in graph.node:
        for g in bodies(n):
            yield from graphs(g, depth + 1)


def all_nodes(graph: "onnx.GraphProto") -> Iterator["onnx.NodeProto"]:
    """Every node of `graph` and of its bodies, a node before the nodes of its bodies."""
    for n in graph.node:
        yield n
        for g in bodies(n):
            yield from all_nodes(g)
