"""Where the CenterPoint weights come from: a checkpoint, the shipped trained weights, or seeded random weights.

The demo preset ships weights trained on cp_debug's synthetic scenes (not on a real dataset; see README,
"Trained demo weights"): they are the default when no checkpoint is given. `random_weights=True` (CLI
`--random-weights`) gives the seeded random initialisation instead, which every other preset uses.
The model a run names (`cp_debug.lidar.record.ModelRecord`) is loaded here by CenterPoint's recipe
(`Recipe.load_model`). Importing this module loads nothing heavy.

A seeded random initialisation is made once: it calibrates on a synthetic scan (4 s of an awml-base bisect on the
H100 machine; a sweep bisects each of its worst frames on a fresh subject), so `load_model` keeps the last few a
process made, and writes each to cp_debug's cache folder (`weights/`, keyed by the config, the seed, torch's and
cp_debug's versions and the model package's source; `CPDEBUG_NO_CACHE=1` makes them afresh), and hands every
caller a model of its own, loaded from them. Checkpoints are read each time (a file may change).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def weights_label(preset, checkpoint: str | Path | None, seed: int | None, random_weights: bool) -> str:
    """What `load_model` will load, in words (for progress lines before the model is built)."""
    from cp_debug.lidar.record import weights_phrase

    return weights_phrase(getattr(preset, "name", preset), checkpoint, seed, random_weights,
                          lambda: shipped_checkpoint(preset) is not None)


def load_model(preset, checkpoint: str | Path | None = None, seed: int | None = 0, *,
               random_weights: bool = False) -> LoadedModel:
    """Build `preset` (a preset name, a config file path ending in .py or .yaml, or a CenterPointConfig from
    `read_config` / `read_yaml_config`) and load `checkpoint` into it strictly; without one, the shipped trained
    weights of the preset if it has them and `random_weights` is False, else a random initialisation from `seed`."""
    from cp_debug.errors import BadInputError
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint
    from cp_debug.models.centerpoint.presets import as_config
    from cp_debug.models.centerpoint.model import build_model

    cfg = as_config(preset)
    if checkpoint is not None and random_weights:
        raise BadInputError("give a checkpoint or --random-weights, not both")
    label = weights_label(cfg, checkpoint, seed, random_weights)
    if checkpoint is None and not random_weights:
        checkpoint = shipped_checkpoint(cfg)
    key = (repr(cfg), int(seed)) if checkpoint is None and seed is not None else None
    if key is not None and key in _LOADED:
        model = _with_state(cfg, {k: v.clone() for k, v in _LOADED[key].items()})  # the kept set stays no model's
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
    from cp_debug.models.centerpoint.model import build_model

    folder = cache_dir("weights")
    path = None if folder is None else folder / f"{_weights_key(cfg, seed)}.pt"
    if path is not None and path.is_file():
        try:
            model = _with_state(cfg, torch.load(path, map_location="cpu", weights_only=True))
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


def _with_state(cfg, state: dict):
    """A CenterPoint of `cfg` holding `state`'s own tensors (a strict load): built on torch's meta device, so that
    no default initialisation is drawn only to be overwritten (0.1-0.2 s of awml-base's start) and the caller's RNG
    does not move; where the meta build or the load fails, built plainly and copied into."""
    import torch

    from cp_debug.models.centerpoint.model import CenterPoint

    try:
        with torch.device("meta"):
            model = CenterPoint(cfg)
        model.load_state_dict(state, strict=True, assign=True)
        if not any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            return model
    except Exception:  # noqa: BLE001 - a constructor that reads its tensors' values: the plain build below
        pass
    with torch.random.fork_rng(devices=[]):  # the constructor's default init must not move the caller's RNG
        model = CenterPoint(cfg)
    model.load_state_dict(state, strict=True)
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
