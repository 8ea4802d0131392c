"""A lockstep lane's values as the deployed graph stores them, and the arrays a lane shares with the reference.

A float16 lane's tensors cross a cut rounded to float16 (`as_stored`); its local runs are fed the reference's
boundary converted into arrays the lane just dropped (`half_feed`, `rounded_into`: no fresh pages for a copy), or
known without running where the segment only moves elements (`moves_only`); a value bit-identical to the reference's
is the reference's own array (`share_if_identical`), so a segment fed only shared arrays needs no local run
(`all_shared`). Used by the segment lockstep (`lockstep.py`) and the grouped one (`lockstep_grouped.py`).
"""

from __future__ import annotations

import sys

import numpy as np
import onnx

from cp_debug.backends.spec import BackendSpec
from cp_debug.graph.plan import Segment
from cp_debug.half import to_fp16

__all__ = ["ROUNDING_EXACT", "all_shared", "as_stored", "half_feed", "moves_only", "rounded_into", "same_type",
           "share_if_identical"]


def as_stored(spec: BackendSpec, values: dict[str, np.ndarray], copy: bool = False,
              kept: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Float tensors as an FP16 graph holds them between two nodes: rounded to float16 (and back to float32).

    The FP16 transform keeps a segment's inputs and outputs in float32, so without this the values crossing a
    cut would skip the float16 rounding (and overflow to inf) that every tensor of the deployed graph gets —
    and ONNX Runtime's CPU provider even drops the Cast pairs it inserts itself around float32-only kernels.
    Rounded in place (a runner's fresh outputs) unless `copy` (arrays someone else holds: the reference's).
    A CUDA runner's own outputs are left as they are: the CUDA EP keeps the Casts, so a float16 node's output
    already is a float16 value, and a node the transform kept in float32 holds float32 as deployed (rounding
    them again cost 13 s of an awml-base `--level all` run on the H100). `kept`: tensors written by nodes kept in
    FP32, left unrounded (the deployed graph holds them in float32).
    """
    if spec.precision != "fp16" or (spec.device == "cuda" and not copy):
        return values
    from cp_debug.precision.rounding import as_fp16_stored

    out = {}
    for t, v in values.items():
        a = np.asarray(v)
        out[t] = as_fp16_stored(a, copy=copy) if a.dtype == np.float32 and t not in kept else a
    return out


def half_feed(ref_in: dict[str, np.ndarray], spare: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's boundary for a float16 lane's local run. A float32 tensor whose lane array was just dropped
    (`spare`: float16, same shape, held by nothing else) is converted into that array: ONNX Runtime gave it from
    its arena, which keeps the memory, so a fresh float16 copy would have added its size to the peak (the awml-base
    neck's concat: 0.19 GiB). Other tensors go as they are (the runner converts them)."""
    feed = {}
    for t, v in ref_in.items():
        buf = spare.pop(t, None)
        fits = (buf is not None and v.dtype == np.float32 and buf.dtype == np.float16 and buf.shape == v.shape
                and buf.flags.c_contiguous and buf.flags.writeable and sys.getrefcount(buf) <= 2)  # buf + the call
        feed[t] = to_fp16(v, out=buf) if fits else v
    return feed


def rounded_into(ref_out: dict[str, np.ndarray], spare: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A rounding-exact segment's local values: the reference's float32 outputs rounded to float16, each into a
    spare array of its shape where one fits (`half_feed`'s test), else a new one. A ReLU's input, just dropped from
    the lane's chain, has its output's shape. On awml-base (cProfile, load ~7) the 27 conversions into new arrays
    took 1.54 CPU s, 57 ms each (fresh pages), `half_feed`'s 32 into spare ones 13 ms each. The same values."""
    free = list(spare.values())
    spare.clear()
    out = {}
    for t, v in ref_out.items():
        if v.dtype != np.float32:
            out[t] = v
            continue
        k = next((k for k, b in enumerate(free) if b.dtype == np.float16 and b.shape == v.shape), None)
        buf = free.pop(k) if k is not None else None
        fits = (buf is not None and buf.flags.c_contiguous and buf.flags.writeable
                and sys.getrefcount(buf) <= 2)  # buf + the call
        out[t] = to_fp16(v, out=buf if fits else None)
        del buf
    return out


# ops whose float outputs are elements of their float inputs, moved or compared, never computed: on inputs rounded to
# float16 they give the outputs rounded (a MaxPool's second output, indices, could tell ties apart: not one of them)
ROUNDING_EXACT = frozenset({"Relu", "MaxPool", "Concat", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
                            "Identity", "Slice", "Split", "Gather", "Constant"})


def moves_only(model: onnx.ModelProto, seg: Segment) -> bool:
    nodes = [model.graph.node[k] for k in seg.nodes]
    return bool(nodes) and all(n.op_type in ROUNDING_EXACT and not (n.op_type == "MaxPool" and len(n.output) > 1
                                                                     and n.output[1]) for n in nodes)


def same_type(a: np.dtype, b: np.dtype) -> bool:
    """Equal dtypes, float16 counting as float32 (an FP16 lane's chain holds float16 arrays)."""
    half = (np.dtype(np.float16), np.dtype(np.float32))
    return a == b or (a in half and b in half)


def share_if_identical(value: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`ref` itself when `value` is bit-identical to it (one array, and local runs can be skipped)."""
    if value is ref:
        return ref
    return ref if _identical(value, ref) else value


def _identical(a: np.ndarray, b: np.ndarray, block: int = 1 << 20) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    fa, fb = a.reshape(-1), b.reshape(-1)
    for lo in range(0, fa.size, block):
        if not np.array_equal(fa[lo:lo + block], fb[lo:lo + block]):
            return False
    return True


def all_shared(a: dict, b: dict) -> bool:
    """Every tensor of `b` is the very same array in `a` (the lane runs on the reference's values)."""
    return all(a[t] is b[t] for t in b)
