"""What `cpdebug train` asks of a recipe, its `Detector`: how its preset is read, its model is built for training and
for re-loading, a batch's losses computed and a scan detected. Each recipe's `train` plug-in (`recipes/<name>/train.py`)
gives its own; the loop, the runner and validation take one `Detector` and know no network. Nothing heavy is
imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Detector:
    """One trainable detector. batch_losses(model, batch, cfg, device, amp) -> named losses (their sum is
    minimised); detect(model, cfg, points, device) -> Detections (eval mode); load_checkpoint(model, path): a saved
    checkpoint loaded strictly into `eval_model(cfg)`'s model (the held-out validation of what was saved)."""

    recipe: str
    get_preset: Callable[[str], Any]
    training_model: Callable[[Any, int], Any]
    eval_model: Callable[[Any], Any]
    batch_losses: Callable[..., dict]
    detect: Callable[..., Any]
    load_checkpoint: Callable[[Any, Any], Any] | None = None

