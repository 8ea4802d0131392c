"""A feed checked against a graph's inputs, the same way for every runner of an ONNX graph (ONNX Runtime, TensorRT).

Names must match; a value of the same kind is cast to the input's dtype (float32 → float16 through ONNX Runtime's
Cast kernel, integers within the target's range); ranks and fixed dimensions must match. What does not fit is one
BadInputError line saying what the graph wants, before the backend sees it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.half import to_fp16


def check_feed(feed: dict[str, np.ndarray], inputs: Mapping[str, tuple[np.dtype | None, Sequence]],
               what: str = "the model") -> dict[str, np.ndarray]:
    """`feed` ready to run: `inputs` maps each input name to (dtype, or None where any goes; dims, where an int
    ≥ 0 is fixed). `what` names the graph in messages ("the model", "the engine")."""
    check_names(feed, inputs, what)
    out = {}
    for name, value in feed.items():
        want, dims = inputs[name]
        arr = _one_shape(_cast(name, np.asarray(value), want, what), dims)
        check_shape(name, tuple(arr.shape), dims, what)
        out[name] = np.require(arr, requirements="C")  # np.ascontiguousarray makes a scalar 1-D
    return out


def _one_shape(arr: np.ndarray, dims: Sequence) -> np.ndarray:
    """A 0-d value for a 1-element input of rank 1, or a 1-element value for a 0-d input, given the input's rank:
    one shape (`compare.diff.one_shape`). ONNX Runtime gives a scalar where a file's value_info says [1] (ddddocr's
    DynamicQuantizeLinear scales): a lockstep segment fed it was refused, exit 2, on a valid file."""
    if arr.size != 1 or arr.ndim == len(dims) or len(dims) > 1 or arr.ndim > 1:
        return arr
    if dims and isinstance(dims[0], int) and dims[0] not in (1, -1):
        return arr
    return arr.reshape((1,) * len(dims))


def check_names(feed: dict, inputs: Mapping, what: str = "the model") -> None:
    """`feed` is a dict naming exactly the graph's inputs (arrays or tensors alike)."""
    if not isinstance(feed, dict):
        raise BadInputError(f"the feed must be a dict of input name → array, got {type(feed).__name__}")
    names = list(inputs)
    unknown = [k for k in feed if k not in inputs]
    if unknown:
        raise BadInputError(f"unknown input name(s) {', '.join(map(repr, unknown))}: {what}'s inputs "
                            f"are {', '.join(names)}")
    missing = [k for k in names if k not in feed]
    if missing:
        raise BadInputError(f"missing input(s) {', '.join(map(repr, missing))}: {what}'s inputs "
                            f"are {', '.join(names)}")


def check_shape(name: str, shape: tuple[int, ...], dims: Sequence, what: str = "the model") -> None:
    """A value of `shape` fits an input of `dims` (rank, and every fixed dimension)."""
    if len(shape) != len(dims):
        raise BadInputError(f"input {name!r} has shape {shape} (rank {len(shape)}); "
                            f"{what} wants rank {len(dims)}: {_fmt_dims(dims)}")
    bad = [i for i, (a, d) in enumerate(zip(shape, dims)) if isinstance(d, int) and d >= 0 and a != d]
    if bad:
        raise BadInputError(f"input {name!r} has shape {shape}; {what} wants {_fmt_dims(dims)} "
                            f"(dimension {bad[0]} differs)")


def _cast(name: str, arr: np.ndarray, want: np.dtype | None, what: str) -> np.ndarray:
    """`arr` in dtype `want` where the kinds agree (any integer to any integer, range checked)."""
    if want is None or arr.dtype == want:
        return arr
    want = np.dtype(want)
    if want.kind != arr.dtype.kind and not (want.kind in "iu" and arr.dtype.kind in "iu"):
        raise BadInputError(f"input {name!r} has dtype {arr.dtype}, {what} wants {want.name}")
    if want.kind in "iu" and arr.size:
        info = np.iinfo(want)
        if arr.min() < info.min or arr.max() > info.max:
            raise BadInputError(f"input {name!r} has values outside {want.name}'s range")
    return to_fp16(arr) if (arr.dtype == np.float32 and want == np.float16) else arr.astype(want)


def _fmt_dims(dims: Sequence) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in dims) + "]"


def same_feed(a: dict, b: dict) -> bool:
    """The same names, dtypes and values: a run's feed kept and one to run (that run's outputs then stand for it)."""
    import numpy as np

    return a.keys() == b.keys() and all(np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
                                        and np.array_equal(a[k], b[k]) for k in a)
