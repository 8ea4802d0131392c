"""Turn what the user names (`--torch FILE.py:FUNC`, `--onnx FILE.onnx`, `--inputs FILE.npz`) into a Subject."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path

import numpy as np
import onnx

from cp_debug.bisect.model_facts import OnnxFacts, TorchFacts
from cp_debug.bisect.subject import Stage, Subject
from cp_debug.errors import BadInputError


def load_npz_inputs(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"--inputs file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:
        raise BadInputError(f"cannot read --inputs {path}: not a valid .npz file ({type(err).__name__})") from err


def match_inputs(given: dict[str, np.ndarray], names: tuple[str, ...], expected: dict[str, tuple | None],
                 what: str) -> dict[str, np.ndarray]:
    """Key `given` by the model's input names (accepting input0, input1, …), checking names, shapes, finiteness."""
    positional = {f"input{i}": n for i, n in enumerate(names)}
    out: dict[str, np.ndarray] = {}
    for key, arr in given.items():
        name = key if key in names else positional.get(key)
        if name is None:
            raise BadInputError(f"--inputs has an unknown input {key!r}: {what} takes {', '.join(names)} "
                                f"(or input0…input{len(names) - 1})")
        out[name] = arr
    missing = [n for n in names if n not in out]
    if missing:
        raise BadInputError(f"--inputs lacks {', '.join(missing)}: {what} takes {', '.join(names)}")
    for n, arr in out.items():
        want = expected.get(n)
        if want is not None and (len(want) != arr.ndim
                                 or any(w is not None and w != a for w, a in zip(want, arr.shape))):
            shown = ["?" if w is None else w for w in want]
            raise BadInputError(f"input {n!r} has shape {list(arr.shape)}, but {what} expects {shown}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise BadInputError(f"input {n!r} contains {bad} NaN/Inf values: divergence cannot be measured on "
                                "non-finite inputs; fix the input file")
    return out


def user_function(target: str, option: str = "--torch"):
    """The function FUNC of `FILE.py:FUNC`, its file imported (run) as a module of its own, with FILE's folder on
    `sys.path` while it imports; `option` names the flag in the one-line errors. Running the user's file is what
    the option asks for (its help says so): nothing else in cp_debug executes a file it is given."""
    file, _, func = target.rpartition(":")
    if not file or not func:
        raise BadInputError(f"{option} wants FILE.py:FUNC (got {target!r})")
    path = Path(file)
    if not path.is_file():
        raise BadInputError(f"{option} file not found: {path}")
    mod_name = f"cpdebug_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"{option} {path}: not a Python file (give FILE.py:FUNC)")
    user = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = user
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(user)
    except Exception as err:
        raise BadInputError(f"cannot import {path}: {type(err).__name__}: {err}") from err
    finally:
        sys.path.pop(0)
    fn = getattr(user, func, None)
    if not callable(fn):
        raise BadInputError(f"{path} has no function {func!r}")
    return fn


def torch_subject(target: str, inputs: str | Path | None = None, exporter: str = "auto") -> Subject:
    """`FILE.py:FUNC` where FUNC() returns (module, example_inputs_tuple)."""
    import torch

    from cp_debug.export.torch_export import export_module

    fn = user_function(target, "--torch")
    file, _, func = target.rpartition(":")
    path = Path(file)
    got = fn()
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], torch.nn.Module)):
        raise BadInputError(f"{target}() must return (module, example_inputs_tuple)")
    module, example = got
    example = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    if not all(isinstance(t, torch.Tensor) for t in example):
        raise BadInputError(f"{target}(): every example input must be a torch.Tensor")
    module.eval()
    input_names = _forward_names(module, len(example))
    with torch.no_grad():
        out = module(*example)
    output_names = output_names_of(out)
    if not output_names:
        raise BadInputError(f"{target}(): the module's forward returned no tensor ({type(out).__name__})")
    ex_np = {n: t.detach().cpu().numpy() for n, t in zip(input_names, example)}
    feed = ex_np
    if inputs is not None:
        feed = match_inputs(load_npz_inputs(inputs), input_names, {n: a.shape for n, a in ex_np.items()},
                            f"{func}()'s model")
        feed = {n: a.astype(ex_np[n].dtype, copy=False) for n, a in feed.items()}
    else:
        match_inputs(feed, input_names, {}, f"{func}()'s model")
    stage = Stage(
        name=path.stem, input_names=input_names, output_names=output_names, module=module, example_inputs=example,
        export=lambda: export_module(module, example, input_names, output_names, exporter=exporter))
    return Subject(name=f"{path.name}:{func}", stages=[stage], inputs=feed,
                   facts=TorchFacts(str(target), type(module).__name__, str(inputs) if inputs is not None else None,
                                    exporter),
                   default_level="block")


def onnx_subject(path: str | Path, inputs: str | Path | None = None, seed: int = 0) -> Subject:
    from cp_debug.graph.model import load_onnx, static_dims

    model = load_onnx(path)
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    names = tuple(i.name for i in ins)
    shapes = {i.name: static_dims(i.type) or () for i in ins}
    if inputs is not None:
        feed = match_inputs(load_npz_inputs(inputs), names, shapes, os.path.basename(str(path)))
    else:
        rng = np.random.default_rng(seed)
        feed = {}
        for i in ins:
            shp = shapes[i.name]
            if any(d is None for d in shp):
                raise BadInputError(f"input {i.name!r} of {path} has dynamic dims {list(shp)}: give --inputs FILE.npz")
            dt = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            feed[i.name] = rng.standard_normal(shp).astype(dt) if np.issubdtype(dt, np.floating) else \
                np.zeros(shp, dtype=dt)
    stage = Stage(name=Path(path).stem, input_names=names, output_names=tuple(o.name for o in model.graph.output),
                  onnx_model=model, exporter="given")
    return Subject(name=str(path), stages=[stage], inputs=feed,
                   facts=OnnxFacts(str(path), str(inputs) if inputs is not None else None, seed),
                   default_level="all")


def output_names_of(out) -> tuple[str, ...]:
    """A name for each tensor a forward returns, in the order torch.onnx flattens them: `output0` for one tensor,
    `output0`, `output1`… for a tuple or list, the keys of a dict or ModelOutput, a dataclass's fields; nested
    ones joined with `_` (`aux_0`). `None` entries are no outputs (the exporters leave them out too)."""
    from cp_debug.sites import tensors_in

    names: list[str] = []
    for path, _ in tensors_in(out):
        parts = [f"output{step}" if k == 0 and isinstance(step, int) else str(step) for k, step in enumerate(path)]
        name = "_".join(parts) or "output0"
        while name in names:
            name += "_"
        names.append(name)
    return tuple(names)


def _forward_names(module, n: int) -> tuple[str, ...]:
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params][:n]
    if len(names) != n or len(set(names)) != n:
        return tuple(f"input{i}" for i in range(n))
    return tuple(names)

