"""A runtime that computes the user's file wrong, named as the runtime's (issue 86, item 4).

A deployed FP8 Q/DQ file (ModelOpt's, ONNX Runtime's quantize_static) runs here with ONNX Runtime's graph
optimisations off (`backends/ort/ort_precision.FP8_ORT_OPT_LEVEL`): at its default level ONNX Runtime 1.32 removes the
ReLU in front of a float8 QuantizeLinear (an INT8 habit; float8's range is signed) and computes another function —
1.33 against FP8's own 0.086 on a CNN — while 1.30 refuses such graphs at that level. A user deploys at the default
level unless told otherwise, so the bisect's verdict (judged on the file as written) is half the story: the same file
is run once more at ONNX Runtime's default level on the reference's stage inputs, its outputs compared with the
reference's. Where the default level is beyond FP8's budget and well past the level the bisect ran (or refuses the
graph), the finding says so with both numbers: a fault of the runtime's optimiser, not of the file nor of FP8.
"""

from __future__ import annotations

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.run_state import CandidateState, RunState

WORSE = 4.0  # the default level's error this many times the bisect's level's (and beyond FP8's budget): a fault


def fp8_runtime_fault(run: RunState, state: CandidateState) -> str | None:
    """The finding for `state`'s deployed FP8 file at ONNX Runtime's default optimisation level, or None (no such
    file, or the default level computes it as well as the bisect's level)."""
    from cp_debug.compare import noise
    from cp_debug.precision.held import file_precision

    spec = state.spec
    if not spec.can(Capability.ORT_SESSIONS) or spec.onnx_dir is None or state.refused is not None \
            or state.judged_at != "fp8":
        return None
    budget = noise.budget("fp8")
    for i in range(len(run.subject.stages)):
        model = run.stage_of(state.label, i).onnx()
        ref = run.ref_outputs.get(i)
        if ref is None or file_precision(model) != "fp8":
            continue
        feed = run.ref_feeds[i]
        off = _error(model, feed, ref, spec.device, "ORT_DISABLE_ALL")
        try:
            on = _error(model, feed, ref, spec.device, "ORT_ENABLE_ALL")
        except Exception as err:  # noqa: BLE001 - the runtime's refusal, said in its words
            return (f"ONNX Runtime {_version()} refuses this FP8 file at its default graph optimisation level "
                    f"(ORT_ENABLE_ALL): {_first_line(err)}; it ran here with them off (ORT_DISABLE_ALL, outputs' "
                    f"rel. RMSE {off:.3g} against the reference): deploy it so")
        if on > budget and on > WORSE * off:
            return (f"runtime fault: ONNX Runtime {_version()} at its default graph optimisation level "
                    f"(ORT_ENABLE_ALL) computes this FP8 file wrong — outputs' rel. RMSE {on:.3g} against the "
                    f"reference, beyond FP8's budget {budget:.3g} — where the same file with its optimisations off "
                    f"(ORT_DISABLE_ALL) gives {off:.3g}: the runtime's optimiser, not the file nor FP8 (deploy with "
                    "graph_optimization_level ORT_DISABLE_ALL, or a runtime that computes it right)")
    return None


def _error(model, feed: dict, ref: dict, device: str, level: str) -> float:
    """The largest relative RMS error of `model`'s outputs on `feed` against `ref`, at ONNX Runtime level `level`."""
    import onnxruntime as ort

    from cp_debug.graph.session import cast_feed, point_at_weights, session_source

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    point_at_weights(so, model)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    with session_source(model) as src:
        sess = ort.InferenceSession(src, sess_options=so, providers=providers)
    names = [o.name for o in sess.get_outputs() if o.name in ref]
    got = sess.run(names, cast_feed(model, feed))
    worst = 0.0
    for name, value in zip(names, got):
        r, v = np.asarray(ref[name], np.float64), np.asarray(value, np.float64)
        if r.shape != v.shape or not r.size:
            continue
        scale = float(np.sqrt(np.mean(r ** 2))) or 1.0
        err = float(np.sqrt(np.mean((v - r) ** 2))) / scale
        worst = max(worst, err if np.isfinite(err) else float("inf"))  # NaN / Inf outputs: as wrong as can be
    return worst


def _version() -> str:
    import onnxruntime as ort

    return ort.__version__


def _first_line(err: BaseException) -> str:
    from cp_debug.errors import first_line

    return first_line(err)[:300]
