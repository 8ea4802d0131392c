"""The one runner contract every backend follows (after Polygraphy's BaseRunner).

A runner is built cheaply (no model loading, no CUDA probing), made ready by `activate()`, runs with
`infer(feed)` where feed and result are dicts of numpy arrays keyed by tensor name, and releases its
resources in `deactivate()`. It is also a context manager. What a runner can do beyond that is declared in
`capabilities` (the spec's, `spec.CAPABILITIES`): a caller asks `runner.can(...)`, and using an ability the runner
lacks is a NotImplementedError naming it (a caller's bug, not the user's input).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterable

from cp_debug.backends.spec import Capability
from cp_debug.errors import CpDebugError

if TYPE_CHECKING:  # pragma: no cover - annotations only: importing the contract loads no numpy
    import numpy as np
    import torch


@dataclass(frozen=True)
class PrecisionReport:
    """What precision a backend really ran, as far as it can be observed.

    `requested` is the spec's precision; `effective` what the backend actually computed in (may differ:
    ORT's CPU provider runs FP16 graphs in FP32 through inserted casts). `notes` are one-line facts for the
    report, such as "37 of 40 Conv nodes ran in float32 after inserted Casts".
    """

    requested: str
    effective: str
    notes: tuple[str, ...] = ()

    @property
    def honest(self) -> bool:
        return self.requested == self.effective

    def to_json(self) -> dict:
        return {"requested": self.requested, "effective": self.effective, "notes": list(self.notes)}


class Runner(abc.ABC):
    """Base class: subclasses implement `_activate`, `_infer` and `_deactivate`, and the methods of the
    capabilities they declare."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(self, name: str):
        self.name = name
        self.is_active = False

    # -- the contract ------------------------------------------------------------------------------------
    def activate(self) -> None:
        if self.is_active:
            return
        self._activate()
        self.is_active = True

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_active()
        return self._infer(feed)

    def deactivate(self) -> None:
        if not self.is_active:
            return
        from cp_debug.determinism import note_gpu_in_use

        note_gpu_in_use()  # the report's peak GPU memory: what this runner's session holds, before it lets go
        try:
            self._deactivate()
        finally:
            self.is_active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- optional abilities (`capabilities`) -------------------------------------------------------------
    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def infer_some(self, feed: dict[str, np.ndarray], extra: Iterable[str]) -> dict[str, np.ndarray]:
        """`infer`, returning the graph's outputs and only the `extra` outputs named (Capability.INFER_SOME)."""
        self._require(Capability.INFER_SOME)
        self._check_active()
        return self._infer_some(feed, extra)

    def run_submodule(self, name: str, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """One submodule alone on the given inputs (Capability.RUN_SUBMODULE)."""
        self._require(Capability.RUN_SUBMODULE)
        self._check_active()
        return self._run_submodule(name, inputs)

    def infer_device(self, feed: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """`infer` on torch tensors (Capability.DEVICE_TENSORS): the feed may sit on any device; the outputs (and
        probes) are torch tensors on the runner's own device, float32 where `infer` gives float32, equal to what
        `infer` returns. On CUDA nothing goes through the host."""
        self._require(Capability.DEVICE_TENSORS)
        self._check_active()
        return self._infer_device(feed)

    # -- optional information ----------------------------------------------------------------------------
    def precision_report(self) -> PrecisionReport | None:
        """What precision really ran; None where the runner cannot tell."""
        return None

    def probes_left_kernels(self) -> bool | None:
        """True where exposing the probes changed none of the kernels that compute the graph's outputs (the probed
        run's outputs are then the graph as deployed's), False where it changed some, None where it cannot tell."""
        return None

    def infer_unprobed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The graph's outputs without its probes, from the session `probes_left_kernels` made to read its kernels
        where they differ from the probed one's (run once, then let go); None where no such session is held."""
        return None

    def infer_as_written(self, path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The graph's outputs from the session of its file as written at `path` that this process kept
        (`ort_sessions.hold`: a `--generate` candidate's decode) where it computes what this runner's graph as
        deployed would (the file run as it is, with options of the same numbers); taken once; None otherwise."""
        return None

    def infer_deployed(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], PrecisionReport] | None:
        """The graph's outputs as deployed (no probe exposed) and the precision that graph ran, where exposing the
        probes changed its kernels (ONNX Runtime's INT8 fusion); None where the probed run's outputs are the
        deployed graph's."""
        return None

    def settings(self) -> dict:
        """Backend options that affect numbers (providers, flags), for the report's `settings`."""
        return {}

    @property
    def missing_outputs(self) -> list[str]:
        """Requested probe tensors its graph lacks after the precision transform (reported missing, never
        guessed); [] where an unknown probe is an error instead (torch)."""
        return []

    def unobserved(self) -> dict[str, str]:
        """Requested tensors it has no value for, each with the reason (a kit's: fused away by TensorRT); {} where
        every requested tensor is computed or `missing_outputs` says why."""
        return {}

    def quant_amax(self) -> dict[str, float]:
        """Calibrated amax per original tensor name, where the runner quantized (INT8); {} otherwise."""
        return {}

    # -- to implement ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _deactivate(self) -> None:  # noqa: B027 - an optional hook: most runners have nothing to release
        pass

    def _infer_some(self, feed: dict[str, np.ndarray], extra: Iterable[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError  # declared with Capability.INFER_SOME

    def _run_submodule(self, name: str, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        raise NotImplementedError  # declared with Capability.RUN_SUBMODULE

    def _infer_device(self, feed: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        raise NotImplementedError  # declared with Capability.DEVICE_TENSORS

    def _check_active(self) -> None:
        if not self.is_active:
            raise CpDebugError(f"runner {self.name!r} is not active: call activate() or use it as a context manager")

    def _require(self, capability: Capability) -> None:
        if not self.can(capability):
            have = ", ".join(sorted(c.value for c in self.capabilities)) or "none"
            raise NotImplementedError(f"runner {self.name!r} cannot {capability.value} (its capabilities: {have}); "
                                      "ask runner.can(...) first")
