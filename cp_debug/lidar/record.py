"""The model a run is about as the user named it (`ModelRecord`): what every report stores (`model_record`), what
`cpdebug extract` loads again and what a recipe's `load_model` builds. It lives below every feature so that each
floor types with it (bisect's report, fix's request, a sweep); it loads nothing and imports nothing heavy (the CLI
imports it at start-up). Which recipe it belongs to a report says beside it (`recipe`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable


def model_name(preset: str, config: str | Path | None) -> str:
    """The model a command's `--preset` / `--config` pair names: the config file where one is given (it must exist),
    else the preset. `get_preset` and `load_model` take either."""
    if config is None:
        return preset
    from cp_debug.errors import BadInputError

    if not Path(config).is_file():
        raise BadInputError(f"--config {config}: no such file (give an AWML/mmdet3d config .py or an autoware-ml "
                            "config .yaml)")
    if not str(config).lower().endswith((".py", ".yaml", ".yml")):
        raise BadInputError(f"--config {config}: a config is an AWML/mmdet3d Python file (.py, mmengine syntax) or an "
                            "autoware-ml YAML file (.yaml, Hydra syntax)")
    return str(config)


def weights_phrase(name: str, checkpoint: str | Path | None, seed: int | None, random_weights: bool,
                   shipped: Callable[[], bool]) -> str:
    """What a recipe's `load_model` will load, in words (for progress lines before the model is built): the
    checkpoint, the preset's shipped trained weights (`shipped()`: whether it has any, asked only when it matters),
    else seeded random weights."""
    if checkpoint is not None:
        return f"checkpoint {checkpoint}"
    if not random_weights and shipped():
        return f"trained {name} weights (synthetic scenes)"
    return f"random weights, seed {seed}"


@dataclass(frozen=True)
class ModelRecord:
    """The model of one run, as the user named it: a preset (or a config file), its weights (a checkpoint, the
    shipped trained weights, or seeded random ones) and, for INT8, a PTQ dir or checkpoint. Building it loads
    nothing (the recipe's `load_model(record)` does); `to_json()` / `from_json()` round-trip it through a report."""

    preset: str | None = "demo"
    config: str | None = None  # a user's config file (AWML/mmdet3d syntax); replaces the preset
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    int8: str | None = None  # a PTQ dir or PTQ/QAT checkpoint the run's INT8 side came from
    # `--model-factory FILE.py:FUNC`: the user's own modules and settings (CenterPoint's, models/centerpoint/
    # factory.py); it replaces preset, config and weights, and is built by the subject that runs it
    factory: str | None = None

    @classmethod
    def of(cls, preset: str | None = "demo", *, config: str | Path | None = None, checkpoint: str | Path | None = None,
           random_weights: bool = False, seed: int = 0, int8: str | Path | None = None,
           factory: str | None = None) -> "ModelRecord":
        """The record of command-line values (paths become strings)."""
        def text(p):
            return None if p is None else str(p)

        if config is not None or factory is not None:
            preset = None  # the config file (or the factory) is the model
        return cls(preset, text(config), text(checkpoint), bool(random_weights), int(seed), text(int8), text(factory))

    @property
    def model_name(self) -> str:
        """What `get_preset` / `load_model` take: the config file's path where one is given, else the preset."""
        from cp_debug.errors import BadInputError

        if self.factory is not None:
            raise BadInputError(f"--model-factory {self.factory}: this command builds a preset's model "
                                "(--preset / --config); the factory's modules run in `cpdebug bisect`")
        name = self.config if self.config is not None else self.preset
        if name is None:
            raise BadInputError("the model names no preset and no config file: give --preset or --config")
        return name

    def to_json(self) -> dict:
        """Every field; `factory` only where one was given (a record without one reads as before it existed)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "factory" or self.factory}

    @classmethod
    def from_json(cls, d: dict) -> "ModelRecord":
        """The record of `to_json()`'s dict; a report's `model_record`. Unknown keys are a BadInputError."""
        from cp_debug.errors import BadInputError

        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - known:
            raise BadInputError(f"not a model record: {d!r} (keys: {', '.join(sorted(known))})")
        return cls.of(**d)
