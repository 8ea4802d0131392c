"""The TransFusion model of a run: a preset or an AWML config file, and its weights (a checkpoint, else seeded
random ones: no TransFusion preset ships trained weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadedTransFusion:
    model: Any  # models.transfusion.model.TransFusion, eval mode
    cfg: Any  # models.transfusion.config.TransFusionConfig
    weights: str  # where the weights came from, in words


def load_transfusion(preset: str, checkpoint: str | Path | None = None, seed: int = 0) -> LoadedTransFusion:
    """Build `preset` (a preset name, or an AWML TransFusion config file ending in .py) and load `checkpoint`
    (mmengine .pth) into it strictly; without one, AWML's initialisation drawn from `seed`."""
    from cp_debug.models.transfusion.model import build_model
    from cp_debug.models.transfusion.presets import get_preset

    cfg = get_preset(preset)
    model = build_model(cfg, seed)
    if checkpoint is None:
        return LoadedTransFusion(model, cfg, f"random (seed {seed})")
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint

    loaded = load_checkpoint(model, checkpoint)
    return LoadedTransFusion(model.eval(), cfg, loaded.source)
