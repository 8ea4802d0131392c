"""The TransFusion model of a run: a preset or an AWML config file, and its weights: a checkpoint; else the trained
weights the preset ships (`transfusion-demo`: cp_debug/models/transfusion/weights/, trained on the synthetic scenes
by benchmarks/train_transfusion_demo.sh); else, or with random_weights, seeded random ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadedTransFusion:
    model: Any  # models.transfusion.model.TransFusion, eval mode
    cfg: Any  # models.transfusion.config.TransFusionConfig
    weights: str  # where the weights came from, in words


SHIPPED_WEIGHTS = {"transfusion-demo": "transfusion_demo.pth"}  # preset -> file in models/transfusion/weights/


def shipped_checkpoint(preset: str) -> Path | None:
    """The packaged trained checkpoint of preset `preset`, or None where it ships none."""
    name = SHIPPED_WEIGHTS.get(preset)
    if name is None:
        return None
    from importlib.resources import files

    path = Path(str(files("cp_debug.models.transfusion") / "weights" / name))
    return path if path.is_file() else None


def load_transfusion(preset: str, checkpoint: str | Path | None = None, seed: int = 0,
                     random_weights: bool = False) -> LoadedTransFusion:
    """Build `preset` (a preset name, or an AWML TransFusion config file ending in .py) and load `checkpoint`
    (mmengine .pth) into it strictly; without one, the preset's shipped trained weights unless `random_weights`,
    else AWML's initialisation drawn from `seed`."""
    from cp_debug.models.transfusion.model import build_model
    from cp_debug.models.transfusion.presets import get_preset

    cfg = get_preset(preset)
    model = build_model(cfg, seed)
    if checkpoint is None and not random_weights:
        shipped = shipped_checkpoint(preset)
        if shipped is not None:
            from cp_debug.models.centerpoint.checkpoint import load_checkpoint

            load_checkpoint(model, shipped)
            return LoadedTransFusion(model.eval(), cfg, f"trained demo weights ({shipped.name}, synthetic scenes)")
    if checkpoint is None:
        return LoadedTransFusion(model, cfg, f"random (seed {seed})")
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint

    loaded = load_checkpoint(model, checkpoint)
    return LoadedTransFusion(model.eval(), cfg, loaded.source)
