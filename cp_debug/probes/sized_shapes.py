"""Shapes at a second input size, chosen so that they tell a tensor's axis order apart.

A stage is exported and traced on one example, often square, whose side can equal a channel count (a 64-channel
stage on a 64×64 map): there (N, C, H, W) and (N, H, W, C) read the same, and where the graph's axes are dynamic
its static shapes say nothing about them at all. So the module ↔ tensor table (`naming.py`) cannot see that an
exporter moved a transpose across a module's boundary (the module's ONNX tensor then holds its output in another
axis order). Here the graph's dynamic input axes are fixed to distinct odd multiples of a power of two (5·S, 7·S,
…, the smallest S at which the module runs, so the net's strides divide them; axes of size 1, a batch of one,
stay), the ONNX shapes are inferred at those sizes, and the module is traced once more on the same input (the
example cropped or tiled to size): two positions of one shape then differ unless a channel count happens to
equal an odd multiple of a stride's side. The export itself is untouched.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import onnx

from cp_debug.graph.grouped import static_types
from cp_debug.graph.model import static_dims
from cp_debug.probes.trace_cache import HeldKey, traced

_FIRST_MULTIPLE = 5  # the fixed axes are 5·S, 7·S, 9·S, …
_MAX_GROWTH = 2  # tried while the input holds at most this many times the example's elements


@dataclass(frozen=True)
class SizedShapes:
    sizes: dict[str, tuple[int, ...]]  # graph input -> the shape both sides were given
    onnx: dict[str, tuple[int | None, ...] | None]  # tensor -> its inferred shape at `sizes`
    torch: dict[str, tuple[int, ...] | None]  # module -> its output shape at `sizes` (None: not one tensor)


def sized_shapes(model: onnx.ModelProto, module, example_inputs: tuple,
                 input_names: tuple[str, ...], *, code_key=None) -> SizedShapes | None:
    """Both sides' shapes at the first size the module runs on, or None: no dynamic axis (the static shapes are
    already exact), inputs that do not line up with the graph's, or no size found within `_MAX_GROWTH`."""
    import torch

    axes = _dynamic_axes(model, example_inputs, input_names)
    if not axes or not all(isinstance(x, torch.Tensor) for x in example_inputs):
        return None
    sides = [example_inputs[i].shape[a] for i, a in axes]
    common = math.gcd(*sides)
    base = sum(x.numel() for x in example_inputs)
    stride, held = 1, HeldKey()  # the module's part of each try's trace key hashed once, while no pass runs
    while common % stride == 0:
        new = {ax: stride * (_FIRST_MULTIPLE + 2 * k) for k, ax in enumerate(axes)}
        inputs = tuple(_resized(x, {a: n for (i, a), n in new.items() if i == j}) for j, x in enumerate(example_inputs))
        if sum(x.numel() for x in inputs) > _MAX_GROWTH * base:
            return None
        stride *= 2
        try:
            with warnings.catch_warnings():  # a size the net cannot take says so here, and is passed over
                warnings.simplefilter("ignore")
                trace = traced(module, inputs, extra=code_key, remember_failure=True, held=held)
        except Exception:  # noqa: BLE001 - the net's strides do not divide this size: try the next one
            continue
        sizes = {name: tuple(x.shape) for name, x in zip(input_names, inputs)}
        types = static_types(model, sizes)
        shapes = {t: static_dims(ty) for t, ty in types.items()}
        return SizedShapes(sizes, shapes, dict(trace.shapes))
    return None


def _dynamic_axes(model: onnx.ModelProto, example_inputs: tuple, input_names: tuple[str, ...]) -> list[tuple[int, int]]:
    """(input index, axis) of every axis the graph leaves open where the example's size is above 1; empty when the
    inputs do not match the graph's (names, ranks, fixed sizes)."""
    declared = {vi.name: vi.type.tensor_type.shape.dim for vi in model.graph.input}
    if len(input_names) != len(example_inputs) or any(n not in declared for n in input_names):
        return []
    axes = []
    for i, (name, x) in enumerate(zip(input_names, example_inputs)):
        dims = declared[name]
        shape = tuple(getattr(x, "shape", ()))
        if len(dims) != len(shape):
            return []
        for a, (d, n) in enumerate(zip(dims, shape)):
            if d.HasField("dim_value"):
                if d.dim_value != n:
                    return []
            elif n > 1:
                axes.append((i, a))
    return axes


def _resized(x, sizes: dict[int, int]):
    """`x` with each axis in `sizes` cropped or tiled (wrapping round) to that length: the example's own values."""
    import torch

    for axis, n in sizes.items():
        x = x.index_select(axis, torch.arange(n) % x.shape[axis])
    return x


def permuted(sized: SizedShapes, module: str, tensor: str) -> bool:
    """The tensor's shape at `sized.sizes` is the module's output shape with its axes in another order."""
    got, want = sized.onnx.get(tensor), sized.torch.get(module)
    return got is not None and want is not None and None not in got and got != want and sorted(got) == sorted(want)


def other_order(sized: SizedShapes, module: str, tensor: str) -> str:
    """Why `module` is left unmapped where `tensor` holds its output in another axis order (`permuted`)."""
    at = ", ".join(f"{n} {list(s)}" for n, s in sized.sizes.items())
    return (f"its ONNX tensor {tensor} holds the output in another axis order ({list(sized.onnx[tensor])} for the "
            f"module's {list(sized.torch[module])} at input {at}: the exporter moved a transpose across the module's "
            "boundary), so the two are not compared")
