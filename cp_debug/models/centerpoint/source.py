"""Where the CenterPoint weights come from: a checkpoint, the shipped trained weights, or seeded random weights.

The demo preset ships weights trained on cp_debug's synthetic scenes (not on a real dataset; see README,
"Trained demo weights"): they are the default when no checkpoint is given. `random_weights=True` (CLI
`--random-weights`) gives the seeded random initialisation instead, which every other preset uses.
`ModelRecord` is the model a run is about as the user named it: what every report stores (`model_record`) and
what `cpdebug extract` loads again. It lives beside the network (floor 4) so that every floor above types with it:
bisect's report, fix's request, a sweep. Importing this module loads nothing heavy (the CLI imports it at start-up).

A seeded random initialisation is made once: it calibrates on a synthetic scan (4 s of an awml-base bisect on the
H100 machine; a sweep bisects each of its worst frames on a fresh subject), so `load_model` keeps the last few a
process made, and writes each to cp_debug's cache folder (`weights/`, keyed by the config, the seed, torch's and
cp_debug's versions and the model package's source; `CPDEBUG_NO_CACHE=1` makes them afresh), and hands every
caller a model of its own, loaded from them. Checkpoints are read each time (a file may change).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cp_debug.models.centerpoint.config import CenterPointConfig

SHIPPED_WEIGHTS = {"demo": "centerpoint_demo.pth"}  # preset -> file in cp_debug/models/centerpoint/weights/
_KEEP = 2  # weight sets kept by load_model
_LOADED: dict[tuple, dict] = {}  # (config, seed) -> a state_dict no model holds


@dataclass(frozen=True)
class LoadedModel:
    cfg: CenterPointConfig
    model: object  # CenterPoint, eval mode
    weights: str  # "checkpoint PATH", "trained demo weights (...)" or "random (seed N)", for messages and reports


def shipped_checkpoint(preset) -> Path | None:
    """The packaged trained checkpoint of `preset` (a name or a CenterPointConfig), or None where it has none:
    a config only has the shipped weights of the preset it equals."""
    if not isinstance(preset, str):
        from cp_debug.models.centerpoint.presets import PRESET_NAMES, get_preset

        preset = preset.name if preset.name in PRESET_NAMES and get_preset(preset.name) == preset else ""
    name = SHIPPED_WEIGHTS.get(preset)
    if name is None:
        return None
    from importlib.resources import files

    path = Path(str(files("cp_debug.models.centerpoint") / "weights" / name))
    return path if path.is_file() else None


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


def weights_label(preset, checkpoint: str | Path | None, seed: int | None, random_weights: bool) -> str:
    """What `load_model` will load, in words (for progress lines before the model is built)."""
    if checkpoint is not None:
        return f"checkpoint {checkpoint}"
    if not random_weights and shipped_checkpoint(preset) is not None:
        return f"trained {getattr(preset, 'name', preset)} weights (synthetic scenes)"
    return f"random weights, seed {seed}"


def load_model(preset, checkpoint: str | Path | None = None, seed: int | None = 0, *,
               random_weights: bool = False) -> LoadedModel:
    """Build `preset` (a preset name, a config file path ending in .py or .yaml, or a CenterPointConfig from
    `read_config` / `read_yaml_config`) and load `checkpoint` into it strictly; without one, the shipped trained
    weights of the preset if it has them and `random_weights` is False, else a random initialisation from `seed`."""
    from cp_debug.errors import BadInputError
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint
    from cp_debug.models.centerpoint.presets import as_config
    from cp_debug.models.centerpoint.model import CenterPoint, build_model

    cfg = as_config(preset)
    if checkpoint is not None and random_weights:
        raise BadInputError("give a checkpoint or --random-weights, not both")
    label = weights_label(cfg, checkpoint, seed, random_weights)
    if checkpoint is None and not random_weights:
        checkpoint = shipped_checkpoint(cfg)
    key = (repr(cfg), int(seed)) if checkpoint is None and seed is not None else None
    if key is not None and key in _LOADED:
        import torch

        with torch.random.fork_rng(devices=[]):  # the constructor's default init must not move the caller's RNG
            model = CenterPoint(cfg)
        model.load_state_dict(_LOADED[key], strict=True)  # copied in: the kept set stays no model's
    elif checkpoint is None:
        model = _random_model(cfg, int(seed)) if seed is not None else build_model(cfg, seed=None)
    else:
        model = build_model(cfg, seed=0, init="mmdet3d")  # every tensor is overwritten by the strict load
        load_checkpoint(model, checkpoint)
    if key is not None and key not in _LOADED:
        while len(_LOADED) >= _KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return LoadedModel(cfg, model.eval(), f"random (seed {seed})" if checkpoint is None else label)


def _random_model(cfg, seed: int):
    """`build_model(cfg, seed)`, read back from the cache folder when a process made it before (then stored)."""
    import torch

    from cp_debug.files import cache_dir, prune_cache, write_atomic
    from cp_debug.models.centerpoint.model import CenterPoint, build_model

    folder = cache_dir("weights")
    path = None if folder is None else folder / f"{_weights_key(cfg, seed)}.pt"
    if path is not None and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            with torch.random.fork_rng(devices=[]):
                model = CenterPoint(cfg)
            model.load_state_dict(state, strict=True)
            path.touch()  # recently used: kept longest by the pruning
            return model
        except Exception:  # noqa: BLE001 - a damaged or foreign file: made again below, and rewritten
            pass
    model = build_model(cfg, seed=seed)
    if path is not None:
        try:
            write_atomic(path, lambda f: torch.save(model.state_dict(), f), parents=True)
            prune_cache(folder)
        except Exception:  # noqa: BLE001 - a read-only or full cache folder: run on without it
            pass
    return model


def _weights_key(cfg, seed: int) -> str:
    """The hash a random initialisation is stored under: config, seed, versions and the model package's source."""
    import hashlib

    import torch

    import cp_debug

    h = hashlib.sha256(f"{cfg!r}|{seed}|{torch.__version__}|{cp_debug.__version__}".encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelRecord:
    """The model of one run, as the user named it: a preset (or a config file), its weights (a checkpoint, the
    shipped trained weights, or seeded random ones) and, for INT8, a PTQ dir or checkpoint. Building it loads
    nothing (`load()` does); `to_json()` / `from_json()` round-trip it through a report."""

    preset: str | None = "demo"
    config: str | None = None  # a user's config file (AWML/mmdet3d syntax); replaces the preset
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    int8: str | None = None  # a PTQ dir or PTQ/QAT checkpoint the run's INT8 side came from
    # `--model-factory FILE.py:FUNC`: the user's own modules and settings (models/centerpoint/factory.py); it
    # replaces preset, config and weights, and is built by the subject that runs it (never by `load()`)
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
            raise BadInputError(f"--model-factory {self.factory}: this command builds cp_debug's own CenterPoint "
                                "(--preset / --config); the factory's modules run in `cpdebug bisect`")
        name = self.config if self.config is not None else self.preset
        if name is None:
            raise BadInputError("the model names no preset and no config file: give --preset or --config")
        return name

    @property
    def label(self) -> str:
        """What `load()` will load, in words (for progress lines before the model is built)."""
        if self.factory is not None:
            return f"model factory {self.factory}"
        return weights_label(self.model_name, self.checkpoint, self.seed, self.random_weights)

    def load(self) -> LoadedModel:
        """Build the model with its weights (see `load_model`). `int8` is recorded, not loaded here: the INT8 side
        is built by what runs it (`centerpoint_subject(int8=…)` for bisect and extract, eval's int8 backends)."""
        return load_model(self.model_name, self.checkpoint, self.seed, random_weights=self.random_weights)

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
