"""Local error for a candidate that cannot run a segment here: a kit's results (`trt-*@KIT`) came from the target, so
each probe's segment runs in ONNX Runtime instead (the same segment of the same file, at the same precision), and the
report says that this is the nearest evidence, not TensorRT's own local error."""

from __future__ import annotations

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.run_state import CandidateState


def local_spec(state: CandidateState) -> tuple[BackendSpec, str | None]:
    """The spec whose runner measures `state`'s local errors: its own, or ONNX Runtime on the CPU at its precision
    for a candidate holding the target's results, with the note that says so (the run's warnings take it once)."""
    spec = state.spec
    if not spec.can(Capability.TARGET_RESULTS):
        return spec, None
    stand_in = BackendSpec("ort", "cpu", spec.precision if spec.precision in ("fp32", "fp16", "int8") else "fp32")
    note = (f"{state.label}: TensorRT cannot run here (these are the target's results): local errors are ONNX "
            f"Runtime's ({stand_in}) on the same segments of the kit's ONNX files, the nearest evidence, not "
            "TensorRT's own")
    return stand_in, note
