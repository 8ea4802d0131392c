"""ONNX Runtime's CUDA execution provider made ready while the model loads.

The first CUDA session of a process pays for what every later one shares: the provider's library and cuDNN's and
cuBLAS's loaded, their first handles, cuDNN's sub-libraries read at its first convolution. Measured on an H200
host (onnxruntime-gpu 1.31.1, the awml-base backbone in float16, HEURISTIC + prefer_nhwc, each in a fresh process):
its session 0.36-0.42 s and first run 1.29-1.52 s alone; after a two-node session made and run first (0.56 s),
0.03 s and 1.22 s. `warm_up_in_background` makes that tiny session on a helper thread (ONNX Runtime releases the
GIL while it builds and runs one), so the candidate's own session, on a bisect's critical path, starts warm.
"""

from __future__ import annotations

import threading
from typing import Callable

from cp_debug.backends.spec import BackendSpec
from cp_debug.determinism import Determinism


def warm_up(options: dict[str, str], half: bool) -> None:
    """A Conv (and a MatMul: cuBLAS) session on the CUDA provider with `options`, run once; float16 where `half`.
    Does nothing where onnxruntime has no CUDA provider; raises what ONNX Runtime raises (the caller ignores it)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return
    kind, dtype = (TensorProto.FLOAT16, np.float16) if half else (TensorProto.FLOAT, np.float32)
    weight = helper.make_tensor("w", kind, [8, 8, 3, 3], np.full(8 * 8 * 9, 0.01, dtype).tobytes(), raw=True)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("MatMul", ["y", "y"], ["z"])],
        "cpdebug_warm_up", [helper.make_tensor_value_info("x", kind, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("z", kind, [1, 8, 16, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    from cp_debug.ort_sessions import open_session, session_options

    sess = open_session(model.SerializeToString(), session_options(quiet=True),
                        [("CUDAExecutionProvider", options), "CPUExecutionProvider"])
    sess.run(None, {"x": np.ones((1, 8, 16, 16), dtype)})


def warm_up_in_background(specs: list[BackendSpec], determinism: Determinism | None = None
                          ) -> threading.Thread | None:
    """`warm_up` on a daemon thread for the first ONNX Runtime CUDA backend of `specs` (its provider options as its
    runner sets them: TF32 only for *-tf32, float16 convs NHWC under the heuristic choice); None where there is
    none. Never raises: the runner says what goes wrong when it makes its own session."""
    spec = next((s for s in specs if s.framework == "ort" and s.device == "cuda"), None)
    if spec is None:
        return None
    from cp_debug.parallel import in_background

    half = spec.precision == "fp16"
    options = (determinism or Determinism()).ort_cuda_provider_options(tf32=spec.precision == "tf32", half=half)
    return in_background(lambda: _heard(lambda: warm_up(options, half)), "cpdebug-ort-warm-up")


def _heard(make: Callable[[], None]) -> None:
    """`make()`, where a server keeps sessions one `export.said.Said` at a time with the keeping runners (on an H200,
    the warm-up's own line on fd 2 — "No registered plugin EP device found" — fell now and then inside a kept
    session's block, was kept with that session and said again by the next command: one more than its own process
    counts); elsewhere as it is."""
    from cp_debug.backends.ort import ort_kept

    if not ort_kept.serving():
        return make()
    with ort_kept.speaking(fd2_only=True):
        make()
