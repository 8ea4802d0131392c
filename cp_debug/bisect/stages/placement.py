"""Where a whole-stage run's probe values lie: the store's device tier (its budget, its device), which sides are
read through IO binding and compared on the device, and the copies between host and device. Shared by the serial
whole-stage path (`stage_whole.py`) and the candidates run ahead beside the reference (`ahead.py`).
"""

from __future__ import annotations

import numpy as np

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.run_state import ProbeSpec, RunState


def free_gpu_memory() -> int | None:
    """Free bytes on the current CUDA device, through torch's CUDA runtime; None where it cannot tell."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info()
    except Exception:  # noqa: BLE001 - no CUDA runtime to ask
        return None
    return int(free)


def probe_bytes(run: RunState, sp: list[ProbeSpec]) -> int:
    return sum(run.store.nbytes(p.name) for p in sp if p.name in run.store)


def use_device_tier(run: RunState) -> bool:
    """Whether the reference's probes go to the store's device tier, enabling it on first use: a reference that
    hands torch tensors over (`DEVICE_TENSORS`) on CUDA, `DEVICE_SHARE` of the free GPU memory for it;
    `BisectOptions.device_budget_mb` sets the budget (0: off; on a CPU reference: torch CPU tensors, as the
    tests run the device path)."""
    store = run.store
    if store.device is not None:
        return True
    budget = device_budget(run)
    if budget is None:
        return False
    import torch

    store.enable_device(torch.device(_tier_type(run)), budget)
    return True


def tier_device(run: RunState) -> str | None:
    """The device type ("cuda" or "cpu") the reference's probes lie on, or will once it runs (the store's device
    tier: a reference that streams its probes or is read through IO binding, with a device budget); None where they
    stay on the host. Enables nothing (`use_device_tier` does)."""
    ref = run.ref_spec
    if not (ref.can(Capability.STREAM_PROBES) or binds_on_device(ref)):
        return None
    if run.store.device is not None:
        return run.store.device.type
    return None if device_budget(run) is None else _tier_type(run)


def _tier_type(run: RunState) -> str:
    """The device type of the tier `use_device_tier` enables: the reference's CUDA device, else torch CPU tensors."""
    return "cuda" if run.ref_spec.device == "cuda" else "cpu"


def device_budget(run: RunState) -> int | None:
    """The bytes the store's device tier would get (`use_device_tier`), None where it stays off."""
    from cp_debug.bisect.store import DEVICE_SHARE

    mb = run.opts.device_budget_mb
    ref = run.ref_spec
    if mb == 0 or not ref.can(Capability.DEVICE_TENSORS) or (mb is None and ref.device != "cuda"):
        return None
    if mb is not None:
        return mb << 20
    free = free_gpu_memory()
    return None if free is None else int(free * DEVICE_SHARE)  # None: no CUDA runtime to ask, the host store


def binds_on_device(spec: BackendSpec) -> bool:
    """An ONNX Runtime reference that can be read through IO binding: its probes straight into the device tier."""
    return spec.can(Capability.INFER_SOME) and spec.can(Capability.DEVICE_TENSORS) and not spec.calibrated


def device_whole(run: RunState, spec: BackendSpec) -> bool:
    """Whether candidate `spec` runs whole stages against the reference's probes in the store's device tier rather
    than in lockstep: an ONNX Runtime reference and candidate on one CUDA device (not INT8, whose calibration reads
    host feeds), with a device tier to hold the probes (`--device-budget 0` keeps the lockstep). There the reference
    runs each stage once (twice with the noise floor), the candidate once, every probe compared where it lies, and
    only the local errors cut segments — where the lockstep ran a session per segment for each side and compared on
    the host (on the H100, awml-base `--level all`: 14.9 s for the ORT pair against 7.8 s for the torch one).
    Not on the CPU: there the lockstep is the faster, and an FP16 lane's values cross its cuts in float16, which a
    whole graph on ONNX Runtime's CPU provider does not do (it drops the Cast pairs around float32-only kernels);
    on CUDA the provider keeps them, so whole stage and lockstep hold the same float16 values."""
    ref = run.ref_spec
    if not (binds_on_device(ref) and binds_on_device(spec)) or not (ref.device == spec.device == "cuda"):
        return False  # (`binds_on_device` leaves INT8 and FP8 out)
    if spec.onnx_dir is not None:
        return False
    return run.store.device is not None or device_budget(run) is not None


def compares_on_device(run: RunState, spec: BackendSpec, sp: list[ProbeSpec]) -> bool:
    """An ONNX Runtime candidate on the device of the store's device tier, which holds some of this stage's
    probes: it runs once through `infer_device` with every probe exposed, its outputs left on the device, when
    they fit half the free GPU memory (the reference's sizes). Not INT8, FP8 (calibration reads host feeds)."""
    store = run.store
    if store.device is None or spec.device != store.device.type or spec.calibrated:
        return False
    if not spec.can(Capability.DEVICE_TENSORS) or not spec.can(Capability.INFER_SOME):
        return False
    if not any(store.device_value(p.name) is not None for p in sp):
        return False
    if spec.device != "cuda":
        return True
    free = free_gpu_memory()
    return free is not None and probe_bytes(run, sp) <= free // 2


def device_feed(feed: dict, device) -> dict:
    """A stage's numpy feed as torch tensors on `device` (one copy in)."""
    return {k: to_device(v, device) for k, v in feed.items()}


def to_device(value, device):
    """`value` as a torch tensor on `device` (a numpy array copied there; a tensor moved where it lies elsewhere)."""
    import torch

    from cp_debug.compare.device_diff import is_tensor

    if not is_tensor(value):
        value = torch.from_numpy(np.ascontiguousarray(value))
    return value.to(device)


def to_host(value):
    """A stage output as the next stage's glue takes it: numpy (a device tensor copied out)."""
    from cp_debug.compare.device_diff import host_array, is_tensor

    return host_array(value) if is_tensor(value) else value
