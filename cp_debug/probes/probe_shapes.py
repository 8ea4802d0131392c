"""Checks of the deployed tensors found for our probes: a tensor of another shape is not the same value as it stands
(`same_shapes`), nor is one tensor two probes' values where cp_debug's export holds two (`one_value_one_probe`)."""

from __future__ import annotations

from cp_debug.probes.naming import ProbeMap, static_shapes
from cp_debug.probes.qdq_pairs import PRECISION_STEPS


def same_shapes(ours, foreign, our_map: ProbeMap, tensors: dict[str, str], how: dict[str, str],
                op_types: dict[str, str], unmapped: dict[str, str], types) -> None:
    """A probe found by structure whose deployed tensor has another shape reads the Reshape after it that gives ours
    (onnxsim's Reshape → Gemm → Reshape around a Linear), else it is unmapped — never compared as a shape mix-up.
    `types(model)`: a graph's tensor types, inferred once by the caller."""
    found = [q for q, way in how.items() if way == "structure"]
    if not found:
        return
    mine, theirs = static_shapes(ours, types(ours)), static_shapes(foreign, types(foreign))
    reshaped = {n.input[0]: n.output[0] for n in foreign.graph.node if n.op_type == "Reshape" and n.input}

    def fits(a, b) -> bool:  # the same rank, and no dimension known on both sides that differs
        return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))

    for q in found:
        want, got = mine.get(our_map.tensors[q]), theirs.get(tensors[q])
        if want is None or got is None or fits(want, got):
            continue
        after = reshaped.get(tensors[q])
        if after is not None and theirs.get(after) is not None and fits(want, theirs[after]):
            tensors[q], op_types[q] = after, "Reshape"
            continue
        unmapped[q] = (f"its deployed counterpart {tensors[q]!r} has shape {list(got)}, the probe {list(want)}: "
                       "not the same value as it stands")
        del tensors[q], how[q], op_types[q]


def one_value_one_probe(our_map: ProbeMap, tensors: dict[str, str], how: dict[str, str], op_types: dict[str, str],
                        unmapped: dict[str, str]) -> None:
    """Probes that hold distinct tensors in our export and one tensor of the file: the file's scopes end early (ORT's
    `quant_pre_process` inlines a HardSwish into unnamed nodes, so `features.0`'s scope ends at its conv). The
    deepest probe keeps it; the others are unmapped — never compared with a tensor that is not their value."""
    sharing: dict[str, list[str]] = {}
    for q, t in tensors.items():
        sharing.setdefault(t, []).append(q)
    for t, qs in sharing.items():
        if len({our_map.tensors.get(q) for q in qs}) < 2:
            continue
        deepest = max(q.count(".") for q in qs)
        keep = [q for q in qs if q.count(".") == deepest]
        for q in qs:
            if len(keep) > 1 or q not in keep:
                unmapped[q] = (f"its tensor in the file, {t!r}, is {', '.join(x for x in qs if x != q)}'s too, "
                               "where cp_debug's export holds two values: the file's scope names end early")
                del tensors[q], how[q], op_types[q]


def scoped_or_matched(a, ours: str | None, scoped: str, matched: dict[str, str],
                      producers: dict[str, str], b=None) -> str:
    """The module's tensor in the foreign file (`b`'s graph): its scope's last one, unless the structural match of
    our tensor is another of the op that makes ours where the scope's is not — a step the file folded into the
    module's scope after its output (the builder's Granite embedding × 12 under /model/embed_tokens/, Mul after the
    Gather) —, or, unmatched, the scope's tensor's one reader is an activation's last op (`_ACTIVATION_TAILS`) that
    makes ours where the scope's op does not: the module's last step written past its scope (the builder's Nemotron
    relu² as act_fn/Relu, then mlp/square/Relu2/pow)."""
    theirs = matched.get(ours or "")
    made = a.producer.get(ours or "")
    if theirs is None and made is not None and b is not None:
        op = a.model.graph.node[made[0]].op_type
        readers = b.consumers.get(scoped, [])
        node = b.model.graph.node[readers[0][0]] if len(readers) == 1 else None
        if op in _ACTIVATION_TAILS and producers.get(scoped) != op and node is not None and node.op_type == op:
            return node.output[0]
    if theirs is None or theirs == scoped or made is None or producers.get(scoped) in PRECISION_STEPS:
        return scoped  # a Q/DQ pair or a Cast after the module's output is the file's precision, read as it is
    op = a.model.graph.node[made[0]].op_type
    return theirs if producers.get(theirs) == op != producers.get(scoped) else scoped


_ACTIVATION_TAILS = frozenset({"Pow", "Relu", "Tanh", "Sigmoid", "Clip"})


def constant_shape(node, constants: dict, through: frozenset) -> tuple:
    """The shape of a node's output computed from constants only: its input's where the op keeps the values
    (`through`), transposed by a Transpose (the builder's tied embeddings gather from lm_head's weight transposed),
    else () (unknown)."""
    from onnx import helper

    shape = constants.get(node.input[0], ())
    if node.op_type in through:
        return shape
    if node.op_type == "Transpose" and shape:
        perm = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "perm"),
                    list(range(len(shape)))[::-1])
        return tuple(shape[k] for k in perm)
    return ()
