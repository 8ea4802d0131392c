"""Pickles read without running code of their own, and checkpoints written as mmengine writes them.

A real mmengine checkpoint (and an mmdet3d info file) holds objects of classes cp_debug does not have (mmengine's
HistoryBuffer, …): they are read with a restricted unpickler that rebuilds tensors, numpy arrays and plain containers
and turns any other class into an inert placeholder, so no code from the file runs and mmengine need not be
installed. What a checkpoint's state dict must hold is the model's business (each recipe's network checks it).
"""

from __future__ import annotations

import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cp_debug.errors import CheckpointError
from cp_debug.files import write_atomic


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
        raise CheckpointError(f"checkpoint {p} cannot be read ({first_line(err)}); is it "
                              "a PyTorch .pth file?") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {p} cannot be read ({first_line(err)}); is it "
                              "a PyTorch .pth file?") from None


def first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


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
