"""The detectors `cpdebug train` trains, one entry each: how its preset is read, its model is built for training
and for re-loading, a batch's losses computed and a scan detected. The loop, the runner and validation take one
`Detector` and know nothing of either network. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Detector:
    """One trainable detector. batch_losses(model, batch, cfg, device, amp) -> named losses (their sum is
    minimised); detect(model, cfg, points, device) -> Detections (eval mode)."""

    recipe: str
    get_preset: Callable[[str], Any]
    training_model: Callable[[Any, int], Any]
    eval_model: Callable[[Any], Any]
    batch_losses: Callable[..., dict]
    detect: Callable[..., Any]


def _centerpoint() -> Detector:
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.train import centerpoint, validate

    return Detector("centerpoint", get_preset, centerpoint.training_model, centerpoint.eval_model,
                    centerpoint.batch_losses, validate.detect)


def _transfusion() -> Detector:
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.train import transfusion

    return Detector("transfusion", get_preset, transfusion.training_model, transfusion.eval_model,
                    transfusion.batch_losses, transfusion.detect)


_DETECTORS = {"centerpoint": _centerpoint, "transfusion": _transfusion}


def detector(recipe: str = "centerpoint") -> Detector:
    """The Detector of a recipe name (centerpoint, transfusion)."""
    from cp_debug.errors import BadInputError

    if recipe not in _DETECTORS:
        raise BadInputError(f"cannot train recipe {recipe!r}: choose one of {', '.join(_DETECTORS)}")
    return _DETECTORS[recipe]()
