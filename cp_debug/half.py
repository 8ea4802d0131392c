"""float32 ↔ float16 conversions at memory speed, through ONNX Runtime's Cast kernel.

numpy converts between float32 and float16 element by element in software: 6–10 ns an element on the CPU
machine, which made an FP16 lockstep bisect of awml-base spend more time converting than running the model.
ONNX Runtime's CPU Cast uses the processor's F16C conversions (0.25–0.3 ns an element there), rounding to
nearest-even with overflow to ±inf and NaN kept, bit-identical to `astype` (tests/test_half.py). Two tiny
Cast sessions are built on first use, one intra-op thread each, and are shared by every caller
(`InferenceSession.run` may be called from several threads at once); arrays of more than 8M elements are cast
in parts on the shared threads of `cp_debug.parallel`. Its callers: rounding at cuts, float16 feeds, comparisons of
float16 values.

float16's largest value, `FP16_MAX`, is here too: every floor's.
"""

from __future__ import annotations

import threading

import numpy as np

from cp_debug.parallel import run_parts, split, thread_count

FP16_MAX = 65504.0  # float16's largest finite value: beyond it a value rounds to ±inf

_LOCK = threading.Lock()
_SESSIONS: dict[str, object] = {}


def to_fp16(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`a` (float32) as float16: into `out` (float16, C-contiguous, a's size) when given, else a new array."""
    return _cast(a, np.float32, np.float16, out)


def to_fp32(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`a` (float16) as float32: into `out` (float32, C-contiguous, a's size) when given, else a new array."""
    return _cast(a, np.float16, np.float32, out)


def as_float32(a: np.ndarray) -> np.ndarray:
    """`a` itself unless it is float16, then its float32 copy."""
    return to_fp32(a) if np.asarray(a).dtype == np.float16 else a


def _cast(a: np.ndarray, src, dst, out: np.ndarray | None) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != src:
        raise TypeError(f"expected a {np.dtype(src).name} array, got {a.dtype}")
    if out is not None and (out.dtype != dst or out.size != a.size or not out.flags.c_contiguous):
        raise TypeError(f"out must be a C-contiguous {np.dtype(dst).name} array of {a.size} elements")
    if a.size == 0:
        res = out if out is not None else np.empty(a.shape, dst)
        return res.reshape(a.shape)
    flat = np.ascontiguousarray(a).reshape(-1)
    sess = _session(np.dtype(src).name, np.dtype(dst).name)
    if out is None:  # numpy's allocation (huge pages where the kernel allows) beats ORT's for large outputs
        out = np.empty(a.shape, dst)
    dest = out.reshape(-1)

    def cast(lo: int, hi: int) -> None:
        io = sess.io_binding()
        io.bind_cpu_input("x", flat[lo:hi])
        io.bind_output("y", "cpu", 0, dst, [hi - lo], dest[lo:hi].ctypes.data)
        sess.run_with_iobinding(io)

    # large arrays in parts on the shared threads (ORT releases the GIL while it runs)
    run_parts(cast, split(flat.size, thread_count()) if flat.size >= _PARALLEL_MIN else [(0, flat.size)])
    return out.reshape(a.shape)


_PARALLEL_MIN = 1 << 23  # elements from which a cast is split over threads


def _session(src: str, dst: str):
    key = f"{src}->{dst}"
    sess = _SESSIONS.get(key)
    if sess is not None:
        return sess
    with _LOCK:
        if key not in _SESSIONS:
            from onnx import TensorProto, helper

            from cp_debug.ort_sessions import open_session, session_options

            types = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}
            graph = helper.make_graph(
                [helper.make_node("Cast", ["x"], ["y"], to=types[dst])], "cast",
                [helper.make_tensor_value_info("x", types[src], ["n"])],
                [helper.make_tensor_value_info("y", types[dst], ["n"])])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            # no arena: outputs are plain allocations, freed with their arrays (an arena would keep the largest
            # tensor ever converted for the rest of the process)
            so = session_options(threads=1, inter_threads=1, spinning=False, arena=False, quiet=True)
            _SESSIONS[key] = open_session(model.SerializeToString(), so)
        return _SESSIONS[key]
