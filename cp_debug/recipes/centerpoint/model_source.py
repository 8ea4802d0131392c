"""Where the CenterPoint weights come from: a checkpoint, or seeded random weights when none is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadedModel:
    cfg: object  # CenterPointConfig
    model: object  # CenterPoint, eval mode
    weights: str  # "checkpoint PATH" or "random (seed N)", for messages and reports


def load_model(preset: str, checkpoint: str | Path | None = None, seed: int | None = 0) -> LoadedModel:
    """Build `preset` and load `checkpoint` into it strictly, or initialise it randomly from `seed`."""
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint
    from cp_debug.models.centerpoint.config import get_preset
    from cp_debug.models.centerpoint.model import build_model

    cfg = get_preset(preset)
    if checkpoint is None:
        return LoadedModel(cfg, build_model(cfg, seed=seed), f"random (seed {seed})")
    model = build_model(cfg, seed=0, init="mmdet3d")  # every tensor is overwritten by the strict load
    load_checkpoint(model, checkpoint)
    return LoadedModel(cfg, model.eval(), f"checkpoint {checkpoint}")
