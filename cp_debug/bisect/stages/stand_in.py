"""The one place a bisect chooses a runner that stands in for another (issue 118, item 1): where the candidate's own
runner cannot run what a check needs, which runner runs it instead, and what the report says about it.

- `local_spec`: a candidate that cannot run a segment here — a kit's results (`trt-*@KIT`) came from the target —
  has each probe's segment run in ONNX Runtime on the CPU instead (the same segment of the same file, at the same
  precision), and the report says that this is the nearest evidence, not TensorRT's own local error.
- `explaining_spec`: the op-level why of an FP16 segment (`findings/segment_why.py`) runs the segment in ONNX
  Runtime; a torch FP16 candidate is explained with ONNX Runtime's float16 storage on the CPU (`ort-cpu-fp16`), and
  the report names that lane.
- `plain_spec`: ONNX Runtime in FP32 on a device — the screen's FP32 twin (`stages/screen.py`), a graph that holds
  its own emulation (FP8 Q/DQ, block formats: `findings/segment_fp8.py`, `segment_blocks.py`) run as the lane runs
  it, a cure's experiment on the CPU (`cures/experiment.py`).
`tests/test_house_rules.py` holds the bisect's other modules to it: none names an ONNX Runtime spec itself.
"""

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


def explaining_spec(state: CandidateState) -> tuple[BackendSpec, str | None]:
    """The spec that runs `state`'s segments for the op-level why of an FP16 candidate (its local errors' spec, a
    torch candidate's ONNX Runtime float16 storage on the CPU) and the lane the report names (None: its own)."""
    spec, _ = local_spec(state)
    if spec.is_torch and spec.precision == "fp16":
        spec = BackendSpec("ort", "cpu", "fp16")
        return spec, str(spec)
    return spec, None


def plain_spec(device: str) -> BackendSpec:
    """ONNX Runtime in FP32 on `device` ("cpu", "cuda"): a graph run as written, its own emulation included."""
    return BackendSpec("ort", device, "fp32")
