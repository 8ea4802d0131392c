"""Two alike nodes told apart by their constants' values, for the chain walk (`foreign._follow`): a rotary
embedding's `rotate_half` reads one tensor through two Slices alike but for their bounds (`x[..., :d/2]` and
`x[..., d/2:]`), so a chain through one of them found "several Slice after the matching node" in a file that holds
the same graph (an RTN-quantized copy of the plain export: 20 of a Qwen2's 151 probes). Small constants only
(initializers and Constant nodes of at most `SMALL` values: bounds, axes, shapes), never the weights."""

from __future__ import annotations

SMALL = 64


def same_constants(a, i: int, b, fits: list[int]) -> list[int]:
    """Those of `b`'s nodes `fits` whose small constant inputs equal our node `i`'s (`a`, `b`: foreign._Graph),
    slot by slot; `fits` itself where that leaves not exactly one (nothing to tell them apart by)."""
    import numpy as np

    mine = _small(a, a.model.graph.node[i])
    if not mine or len(set(fits)) < 2:
        return fits
    kept = []
    for j in dict.fromkeys(fits):
        theirs = _small(b, b.model.graph.node[j])
        if all(k in theirs and np.shape(v) == np.shape(theirs[k]) and np.array_equal(v, theirs[k])
               for k, v in mine.items()):
            kept.append(j)
    return kept if len(kept) == 1 else fits


def _small(g, node) -> dict:
    """Input slot → the values of each small constant input of `node` in graph `g`."""
    out = {}
    for k, t in enumerate(node.input):
        if t and not g.computed(t):
            v = _value(g, t)
            if v is not None:
                out[k] = v
    return out


def _value(g, name: str):
    """A small constant's values (an initializer or a Constant node's), None otherwise; kept on the graph."""
    cache = g.__dict__.setdefault("_small_values", None)
    if cache is None:
        from onnx import numpy_helper

        from cp_debug.precision.nbits import array

        cache = {}
        for init in g.model.graph.initializer:
            try:  # a stand-in of the float view (`block_forms.stand_in`) has dims and no values
                if _count(init.dims) <= SMALL and (v := array(init)) is not None:
                    cache[init.name] = v
            except ValueError:
                continue
        for node in g.model.graph.node:
            if node.op_type == "Constant":
                value = next((x.t for x in node.attribute if x.name == "value"), None)
                if value is not None and _count(value.dims) <= SMALL:
                    cache[node.output[0]] = numpy_helper.to_array(value)
        g.__dict__["_small_values"] = cache
    return cache.get(name)


def _count(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n
