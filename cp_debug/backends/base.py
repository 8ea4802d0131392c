"""The one runner contract every backend follows (after Polygraphy's BaseRunner).

A runner is built cheaply (no model loading, no CUDA probing), made ready by `activate()`, runs with
`infer(feed)` where feed and result are dicts of numpy arrays keyed by tensor name, and releases its
resources in `deactivate()`. It is also a context manager.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from cp_debug.errors import CpDebugError


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
    """Base class: subclasses implement `_activate`, `_infer` and `_deactivate`."""

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
        if not self.is_active:
            raise CpDebugError(f"runner {self.name!r} is not active: call activate() or use it as a context manager")
        return self._infer(feed)

    def deactivate(self) -> None:
        if not self.is_active:
            return
        try:
            self._deactivate()
        finally:
            self.is_active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- optional information ----------------------------------------------------------------------------
    def precision_report(self) -> PrecisionReport | None:
        """What precision really ran; None where the runner cannot tell."""
        return None

    def settings(self) -> dict:
        """Backend options that affect numbers (providers, flags), for the report's `settings`."""
        return {}

    # -- to implement ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _deactivate(self) -> None:  # noqa: B027 - an optional hook: most runners have nothing to release
        pass


@dataclass
class RunnerInfo:
    """Static facts about a runner kind, for `cpdebug backends` and unavailability messages."""

    framework: str
    install_hint: str
    extras: dict = field(default_factory=dict)
