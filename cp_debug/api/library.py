"""cp_debug as a library: `cp_debug.bisect(model, inputs, "torch,ort-cpu-fp16")` builds the request the command line
builds for `cpdebug bisect` (`bisect_request.py`'s groups) and runs it (`bisect_run.py`) to a `Report`; a pytest
suite gates numerics with `assert_within_precision`. A model: a `torch.nn.Module` (its example inputs `example=`,
else the samples), `(module, example)`, an ONNX file, an `onnx.ModelProto`, or `"FILE.py:FUNC"` as `--torch` takes
it; samples: numpy arrays, a dict name → array or a tuple in the model's input order. What goes wrong is the
command's one line, raised: a `CpDebugError` subclass (`errors.py`; a user's model raising: `UserCodeError`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp_debug.errors import BadInputError

if TYPE_CHECKING:
    from cp_debug.api.report import Report

def bisect(model: Any, inputs: Any = None, backends: "str | Sequence[str]" = "torch,ort", *, example: Any = None,
           level: str | None = None, refine: bool = True, atol: float | None = None, rtol: float | None = None,
           tolerance_mode: str | None = None, deterministic: bool = True, cudnn_algo: str | None = None,
           noise_floor: bool = True, local: bool = True, calib: Sequence[Any] | None = None,
           keep_fp32: "str | Sequence[str] | None" = None, exclude_int8: "str | Sequence[str] | None" = None,
           exporter: str = "auto", seed: int = 0, memory_budget: int | None = None,
           device_budget: int | None = None, lockstep_mode: str = "auto") -> "Report":
    """Where `backends`' candidates part from the reference (the first) on `model` fed `inputs`, and why — what
    `cpdebug bisect` finds with the same options (the option names are the command's, `--keep-fp32` as
    `keep_fp32=`; `calib=`: samples to calibrate INT8 / FP8 on, each as `inputs`). Quiet: nothing on the terminal."""
    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.api.report import Report

    pairs = groups.backends_group(backends)
    with _model_given(model, inputs, example) as (torch_model, onnx_model):
        subject = groups.model_group(torch_model=torch_model, onnx_model=onnx_model, exporter=exporter, seed=seed)
        subject = groups.samples_group(subject, _feed(inputs))
        opts = groups.options_group(level=level, refine=refine, atol=atol, rtol=rtol, tolerance_mode=tolerance_mode,
                                    deterministic=deterministic, cudnn_algo=cudnn_algo, noise_floor=noise_floor,
                                    local=local, keep_fp32=keep_fp32, exclude_int8=exclude_int8, seed=seed,
                                    memory_budget=memory_budget, device_budget=device_budget,
                                    lockstep_mode=lockstep_mode)
        request = groups.bisect_request(pairs, subject, opts, [_feed(c) for c in calib or ()])
        return Report(run_request(request))


def assert_within_precision(model: Any, inputs: Any = None, backends: "str | Sequence[str]" = "ort-cpu-fp16",
                            **options) -> "Report":
    """The candidate(s) within the precision they run at, against the reference, on `inputs` — else an
    AssertionError whose message is the report's summary (each verdict, the root cause and its reason). `backends`:
    the candidates alone (the reference: torch for a module, ort for an ONNX model) or REF,CAND… as `bisect` takes
    them; `options`: `bisect`'s. Returns the report."""
    __tracebackhide__ = True  # pytest shows the caller's line and the summary
    words = backends.split(",") if isinstance(backends, str) else list(backends)
    if len([w for w in words if w.strip()]) == 1:
        words = ["ort" if _is_onnx(model) else "torch", *words]
    report = bisect(model, inputs, words, **options)
    if not report.ok:
        raise AssertionError(f"{report.outcome.words} (exit {report.exit_code})\n{report.summary()}")
    return report


def _is_onnx(model) -> bool:
    return isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx") or _is_proto(model)


def _is_proto(model) -> bool:
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


@contextlib.contextmanager
def _model_given(model, inputs, example):
    """(torch_model, onnx_model) of what the caller gave, as the request's model group takes them: a module (with its
    example) in-process, "FILE.py:FUNC", an ONNX file, or a ModelProto written to a temporary folder for the run."""
    if _is_proto(model):
        with tempfile.TemporaryDirectory(prefix="cpdebug_model_") as folder:
            path = Path(folder) / "model.onnx"
            try:
                path.write_bytes(model.SerializeToString())
            except ValueError as err:  # past protobuf's 2 GiB
                raise BadInputError(f"the ModelProto cannot be serialized ({err}): save it with its weights as "
                                    "external data and give the .onnx path") from err
            yield None, path
        return
    if isinstance(model, (str, os.PathLike)):
        text = str(model)
        if ".py:" in text and not text.endswith(".onnx"):
            yield text, None
        elif text.endswith(".onnx") or Path(text).is_file():
            yield None, Path(text)
        else:
            raise BadInputError(f"model {text!r}: not an ONNX file or FILE.py:FUNC")
        return
    from cp_debug.bisect.subjects.loaders import GivenModule

    if isinstance(model, tuple) and len(model) == 2:
        model, example = model
    if example is None:
        example = _example_of(model, inputs)
    yield GivenModule(model, example), None


def _example_of(model, inputs):
    """A module's example inputs where none was given: the samples, as tensors (a dict: by keyword, each a parameter
    of its forward)."""
    import inspect

    import torch

    if inputs is None:
        raise BadInputError("a torch module needs its example inputs: give inputs= (or example=)")
    if isinstance(inputs, Mapping):
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError, AttributeError):
            params = {}
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in inputs if params and not takes_any and k not in params]
        if unknown:
            raise BadInputError(f"inputs {', '.join(map(repr, unknown))}: {type(model).__name__}.forward takes "
                                f"{', '.join(params)} (give the arrays by those names, or as a tuple in order)")
        return {k: torch.as_tensor(_array(v)) for k, v in inputs.items()}
    items = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    return tuple(torch.as_tensor(_array(v)) for v in items)


def _feed(samples) -> dict | None:
    """One sample as the subject loaders take it: name → array (a tuple or one array: input0, input1, …)."""
    if samples is None:
        return None
    if isinstance(samples, Mapping):
        return {str(k): _array(v) for k, v in samples.items()}
    items = samples if isinstance(samples, (tuple, list)) else (samples,)
    return {f"input{i}": _array(v) for i, v in enumerate(items)}


def _array(value):
    import numpy as np

    if hasattr(value, "detach"):  # a tensor given where arrays are asked for
        value = value.detach().cpu().numpy()
    return np.asarray(value)

