"""Load and save mmengine-style CenterPoint checkpoints, strictly: a checkpoint loads whole or not at all.

autoware-ml's Lightning checkpoints (`.ckpt`: `state_dict` beside `epoch`, `loops`, `optimizer_states`, …) load too:
their keys are renamed to cp_debug's through `autoware_ml_names` (its metric and loss modules hold no weights of the
network and are dropped), then checked as strictly.

A real mmengine checkpoint also holds `meta`, `message_hub`, optimizer state and objects of mmengine's own
classes. Those are read with a restricted unpickler that rebuilds tensors, numpy arrays and plain containers
and turns any other class into an inert placeholder, so no code from the file runs and mmengine need not be
installed. AWML's PTQ checkpoints (BN fused into the convs, quantizer amax buffers) load only into the BN-fused
structure (`fused.build_fused_model`); given to the unfused model they are refused with a message, since a
lenient load would silently drop the fused biases.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping

from cp_debug.errors import CheckpointError
from cp_debug.models.centerpoint.autoware_ml_names import is_autoware_ml_state, to_cp_debug
from cp_debug.pickles import read_checkpoint

_SHOW = 5  # keys named per category in an error message


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What was loaded: the source, the number of tensors loaded, the checkpoint's `meta` (placeholders
    inside) and, for a PTQ checkpoint, its quantizer amax buffers by key (not loaded into the model)."""

    source: str
    num_keys: int
    meta: dict = field(default_factory=dict)
    quantizer_amax: dict = field(default_factory=dict)


def extract_state_dict(obj: Any, source: str = "checkpoint") -> tuple["OrderedDict[str, Any]", dict]:
    """(state_dict, meta) from an mmengine checkpoint dict or a bare state dict; a `module.` prefix is stripped."""
    import torch

    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a dict with a state_dict")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state = obj["state_dict"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        keys = ", ".join(list(map(str, obj))[:8])
        raise CheckpointError(f"{source} has no 'state_dict' and is not a bare state dict (top-level keys: {keys})")
    out = OrderedDict()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key[len("module."):] if key.startswith("module.") else key] = value
    if is_autoware_ml_state(out):
        out = _from_autoware_ml(out, source)
    return out, meta


def _from_autoware_ml(state: "OrderedDict[str, Any]", source: str) -> "OrderedDict[str, Any]":
    """An autoware-ml Lightning state dict under cp_debug's keys (`autoware_ml_names`): its metric and loss modules
    dropped, every other key renamed (two keys landing on one is an error, never a silent overwrite)."""
    out: OrderedDict[str, Any] = OrderedDict()
    for key, value in state.items():
        ours = to_cp_debug(key)
        if ours is None:
            continue
        if ours in out:
            raise CheckpointError(f"{source}: autoware-ml keys {key!r} and another both map to {ours!r}")
        out[ours] = value
    return out


# -- checking --------------------------------------------------------------------------------------------------
def is_quantizer_key(key: str) -> bool:
    return key.endswith("._amax") or "_quantizer." in key


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOW else f" ({len(keys)})")


def _shape_table(cfg, fused: bool = False) -> dict[str, tuple[int, ...]]:
    import torch

    from cp_debug.models.centerpoint.fused import fuse_structure
    from cp_debug.models.centerpoint.model import CenterPoint

    with torch.device("meta"):
        model = CenterPoint(cfg)
        if fused:
            fuse_structure(model)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def presets_matching(state: Mapping[str, Any], fused: bool = False) -> list[str]:
    """Names of the presets whose state_dict keys and shapes equal `state`'s (several presets share shapes);
    quantizer amax keys are ignored, `fused` compares with the BN-fused structure."""
    from cp_debug.models.centerpoint.presets import PRESET_NAMES, get_preset

    shapes = {k: tuple(v.shape) for k, v in state.items() if not is_quantizer_key(k)}
    return [name for name in PRESET_NAMES if _shape_table(get_preset(name), fused) == shapes]


def check_state_dict(model, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise CheckpointError unless `state` has exactly the model's keys with the model's shapes."""
    from cp_debug.models.centerpoint.fused import is_bn_fused, quantizable_layers

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    amax = [k for k in state if is_quantizer_key(k)]
    fused_model = is_bn_fused(model)
    if amax and not fused_model:
        fused = [k for k in state if k.endswith(".bias") and k not in expected]
        raise CheckpointError(
            f"{source} is an AWML PTQ (INT8-calibrated) checkpoint: {len(amax)} quantizer amax key(s), "
            f"{len(fused)} conv(s) with BN fused into a bias; it does not fit the unfused FP32 model - load the "
            "FP32 checkpoint it was calibrated from, or build the fused structure first "
            "(cp_debug.models.centerpoint.fused.build_fused_model)"
        )
    if amax:
        layers = set(quantizable_layers(model))
        strays = [k for k in amax if k.split("._", 1)[0] not in layers]
        if strays:
            raise CheckpointError(f"{source}: quantizer key(s) for layers the model lacks: {_few(strays)}")
        state = {k: v for k, v in state.items() if not is_quantizer_key(k)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or wrong):
        return
    if (unexpected and all(k.endswith(".bias") for k in unexpected)
            and any(k.endswith(".running_mean") for k in missing)):
        raise CheckpointError(
            f"{source} has BN fused into its convs ({len(unexpected)} conv bias key(s) the model lacks, "
            f"{sum(k.endswith('.running_mean') for k in missing)} BN layer(s) gone); it does not fit the unfused "
            "model - load the unfused FP32 checkpoint, or build the fused structure first "
            "(cp_debug.models.centerpoint.fused.build_fused_model)"
        )
    if (fused_model and any(k.endswith(".running_mean") for k in unexpected)
            and all(k.endswith(".bias") for k in missing)):
        raise CheckpointError(
            f"{source} is an unfused checkpoint (it has the BN layers) and the model is BN-fused: load it into "
            "the unfused model, then fold its BN with cp_debug.models.centerpoint.fused.fuse_batchnorm"
        )
    parts = []
    if missing:
        parts.append(f"missing {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {_few(unexpected)}")
    if wrong:
        k = wrong[0]
        parts.append(
            f"wrong shape {_few(wrong)} (e.g. {k}: checkpoint {list(state[k].shape)} vs model {list(expected[k])})"
        )
    cfg = getattr(model, "cfg", None)
    fits = presets_matching(state, fused_model)
    if fits:
        hint = f"its keys and shapes fit preset(s) {', '.join(fits)}: pass --preset {fits[0]}"
    else:
        from cp_debug.models.centerpoint.presets import PRESET_NAMES

        hint = ("it fits none of the presets (" + ", ".join(PRESET_NAMES) + "); give the config file it was "
                "trained with (.py or .yaml) or check it is a pillar CenterPoint (SECOND or ConvNeXt_PC) checkpoint")
    name = f"preset {cfg.name!r}" if cfg is not None else "the model"
    raise CheckpointError(f"{source} does not fit {name}: {'; '.join(parts)}; {hint}")


# -- public API ------------------------------------------------------------------------------------------------
def load_checkpoint(model, path_or_state) -> LoadedCheckpoint:
    """Load an mmengine checkpoint (path, checkpoint dict or bare state dict) into `model`, strictly."""
    if isinstance(path_or_state, (str, os.PathLike)):
        source = f"checkpoint {path_or_state}"
        obj = read_checkpoint(path_or_state)
    else:
        source = "checkpoint"
        obj = path_or_state
    state, meta = extract_state_dict(obj, source)
    check_state_dict(model, state, source)
    amax = OrderedDict((k, v) for k, v in state.items() if is_quantizer_key(k))
    weights = OrderedDict((k, v) for k, v in state.items() if not is_quantizer_key(k))
    model.load_state_dict(weights, strict=True)
    return LoadedCheckpoint(source=source, num_keys=len(weights), meta=dict(meta), quantizer_amax=dict(amax))
