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
import pickle
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cp_debug.errors import CheckpointError
from cp_debug.files import write_atomic
from cp_debug.models.centerpoint.autoware_ml_names import is_autoware_ml_state, to_cp_debug

_SHOW = 5  # keys named per category in an error message


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What was loaded: the source, the number of tensors loaded, the checkpoint's `meta` (placeholders
    inside) and, for a PTQ checkpoint, its quantizer amax buffers by key (not loaded into the model)."""

    source: str
    num_keys: int
    meta: dict = field(default_factory=dict)
    quantizer_amax: dict = field(default_factory=dict)


# -- reading ---------------------------------------------------------------------------------------------------
class _Opaque:
    """Stands in for an object of a class the restricted unpickler will not import (mmengine's HistoryBuffer…)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<{getattr(type(self), 'qualname', 'object')} (not loaded)>"


def _opaque_class(module: str, name: str) -> type:
    return type(name, (_Opaque,), {"qualname": f"{module}.{name}"})


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.nn.parameter", "Parameter"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),
}


def _is_safe(module: str, name: str) -> bool:
    if (module, name) in _SAFE_GLOBALS:
        return True
    if module == "torch" and (name.endswith("Storage") or name in _torch_dtype_names()):
        return True
    return module == "numpy.dtypes" and name.endswith("DType")


def _torch_dtype_names() -> set[str]:
    import torch

    return {n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype)}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only safe classes (builtins, numpy, torch storages and dtypes); any other class
    becomes an opaque stand-in, so a checkpoint or info file never runs code of its own."""

    def find_class(self, module: str, name: str):
        if _is_safe(module, name):
            return super().find_class(module, name)
        return _opaque_class(module, name)


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# A pickle "module" for torch.load(pickle_module=...): torch subclasses its Unpickler and calls its load.
_restricted_pickle = types.ModuleType("cp_debug_restricted_pickle")
_restricted_pickle.Unpickler = RestrictedUnpickler
_restricted_pickle.load = _restricted_load


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with weights_only; where mmengine objects make that refuse, the restricted unpickler."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist (give an mmengine .pth or autoware-ml .ckpt file)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # holds globals that weights_only refuses: read it again, restricted
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        raise CheckpointError(f"checkpoint {p} cannot be read ({_first_line(err)}); is it "
                              "a PyTorch .pth file?") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {p} cannot be read ({_first_line(err)}); is it "
                              "a PyTorch .pth file?") from None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


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


def save_checkpoint(model, path: str | Path, meta: dict | None = None) -> Path:
    """Write `{"state_dict": ..., "meta": {...}}` as mmengine does, atomically (`cp_debug.files.write_atomic`)."""
    import torch

    import cp_debug

    cfg = getattr(model, "cfg", None)
    full_meta = {"cp_debug_version": cp_debug.__version__, "torch_version": str(torch.__version__)}
    if cfg is not None:
        full_meta["preset"] = cfg.name
    full_meta.update(meta or {})
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in model.state_dict().items())
    return write_atomic(path, lambda f: torch.save({"state_dict": state, "meta": full_meta}, f), parents=True)
