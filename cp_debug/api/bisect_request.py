"""A bisect's typed request, built in one place from option groups — one group per idea, as Polygraphy's
`tools/args` — by the command line (`cpdebug bisect`'s options) and by the library (`cp_debug.bisect(...)`) alike,
so the two cannot drift: the model, its samples, the backends, the calibration, the comparison options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from cp_debug.errors import BadInputError
from cp_debug.lidar.record import ModelRecord
from cp_debug.recipes.catalog import DEFAULT

if TYPE_CHECKING:
    import numpy as np

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.options import BisectOptions
    from cp_debug.bisect.subjects.loaders import GivenModule
    from cp_debug.export.dynamic import DynamicAxes

Pairs = list[tuple[str, "BackendSpec"]]
Samples = Union[Path, Mapping[str, "np.ndarray"]]  # an .npz file (the command line), or arrays (the library)


@dataclass(frozen=True)
class SubjectRequest:
    """The model of a bisect as the user named it: a recipe's (`model`), or `--torch` / `--onnx` (a module or an ONNX
    file handed over in-process by the library: `torch_model` a `GivenModule`), and its samples (`inputs`)."""

    model: ModelRecord | None  # None: --torch or --onnx
    torch_model: "str | GivenModule | None" = None
    onnx_model: Path | None = None
    inputs: Samples | None = None
    exporter: str = "auto"
    seed: int = 0  # of the inputs generated for --onnx, and of the random generators a --torch file runs with
    dynamic: "DynamicAxes | None" = None  # --dynamic: a --torch model's dynamic axes (export/dynamic.py)
    points: Path | None = None
    load_dim: int | None = None
    use_dim: str | None = None
    params: tuple[Path, ...] = ()  # Autoware's parameter files: checked first (lint)
    recipe: str = DEFAULT  # the built-in recipe `model` is of (recipes/catalog.py)
    generate: int | None = None  # --generate N: a decoder LLM file's greedy decode, then the step that flips


@dataclass(frozen=True)
class BisectRequest:
    """Everything a bisect runs on: the (label, spec) pairs (the reference first), the subject, the engine's options
    and the INT8 / FP8 calibration samples (.npz files or arrays)."""

    pairs: tuple[tuple[str, "BackendSpec"], ...]
    subject: SubjectRequest
    options: "BisectOptions"
    calib: tuple[Samples, ...] = ()


def backends_group(backends: "str | Sequence[str] | Pairs | None", default: str = "torch,ort") -> Pairs:
    """`--backends` as the command line spells it (`"torch,ort-cpu-fp16"`), or a list of such words, or pairs parsed
    already: the (label, spec) pairs, checked by bisect's rule (a reference may come back as a noise check)."""
    from cp_debug.backends.spec import NOISE_CHECK, parse_backends

    if backends and not isinstance(backends, str) and all(isinstance(b, tuple) for b in backends):
        return list(backends)
    if backends is not None and not isinstance(backends, str):
        backends = ",".join(str(b) for b in backends)
    return parse_backends(backends or default, rule=NOISE_CHECK)


def model_group(model: ModelRecord | None = None, *, torch_model: "str | GivenModule | None" = None,
                onnx_model: Path | None = None, recipe: str = DEFAULT, recipe_given: bool = False,
                exporter: str = "auto", seed: int = 0, dynamic: "DynamicAxes | None" = None,
                params: Sequence[Path] = (), generate: int | None = None) -> SubjectRequest:
    """The model: one of a recipe's (`model`, a ModelRecord; `recipe` its name, resolved and checked by the caller,
    `recipe_given` where the user named it), `--torch` (FILE.py:FUNC, or a module in-process) or `--onnx`; the
    samples come with `samples_group`."""
    model = model or ModelRecord()
    if len([x for x in (recipe_given, torch_model, onnx_model, model.factory) if x]) > 1:
        raise BadInputError("give one model: --recipe, --model-factory, --torch or --onnx")
    if (torch_model or onnx_model) and model.int8 is not None:
        raise BadInputError("--int8 is for the CenterPoint recipe: drop --torch/--onnx")
    return SubjectRequest(model=None if torch_model or onnx_model else model, torch_model=torch_model,
                          onnx_model=onnx_model, exporter=exporter, seed=seed, dynamic=dynamic,
                          params=tuple(params or ()), recipe=recipe, generate=generate)


def samples_group(subject: SubjectRequest, inputs: Samples | None = None, points: Path | None = None,
                  load_dim: int | None = None, use_dim: str | None = None) -> SubjectRequest:
    """The samples: `--inputs` (an .npz, or arrays) for a --torch/--onnx model, `--points` for a recipe's."""
    from dataclasses import replace

    if (load_dim is not None or use_dim is not None) and points is None:
        raise BadInputError("--load-dim/--use-dim describe a --points file: give --points FILE or drop them")
    return replace(subject, inputs=inputs, points=points, load_dim=load_dim, use_dim=use_dim)


def calibration_group(calib: Sequence[Samples] | None, subject: SubjectRequest, pairs: Pairs) -> tuple[Samples, ...]:
    """The INT8 / FP8 calibration samples (`--calib`, repeated), checked against the model: a checkpoint's own
    calibration (--int8) takes none; a PyTorch INT8 reference needs a quantized checkpoint."""
    calib = tuple(calib or ())
    int8 = subject.model.int8 if subject.model is not None else None
    torch_int8 = [s for _, s in pairs if s.is_torch and s.precision == "int8"]
    if int8 is None and torch_int8:
        from cp_debug.backends.pytorch.torch_runner import TORCH_INT8_HINT

        raise BadInputError(TORCH_INT8_HINT.format(spec=torch_int8[0]))
    if int8 is not None and calib:
        raise BadInputError("--int8 brings its own calibration (the checkpoint's amax): drop --calib")
    return calib


def options_group(*, level: str | None = None, refine: bool = True, atol: float | None = None,
                  rtol: float | None = None, tolerance_mode: str | None = None, deterministic: bool = True,
                  cudnn_algo: str | None = None, noise_floor: bool = True, local: bool = True,
                  keep_fp32: "str | Sequence[str] | None" = None, exclude_int8: "str | Sequence[str] | None" = None,
                  seed: int = 0, memory_budget: int | None = None, device_budget: int | None = None,
                  lockstep_mode: str = "auto", metric: Any = None) -> "BisectOptions":
    """How the run compares: the engine's options, each checked (a tolerance mode against atol/rtol, a cuDNN
    algorithm, a lockstep mode); node lists as comma-separated text or a list; `metric` the application's decision
    (eval's `--metric NAME|FILE.py:FUNC`, or a function already read)."""
    from cp_debug.bisect.options import BisectOptions
    from cp_debug.compare.modes import check_mode
    from cp_debug.determinism import check_conv_algo

    mode = check_mode(tolerance_mode, atol, rtol)
    check_conv_algo(cudnn_algo)
    if lockstep_mode not in ("auto", "segments", "grouped"):
        raise BadInputError(f"--lockstep-mode {lockstep_mode!r}: use auto, segments or grouped")
    return BisectOptions(level=level, refine=refine, atol=atol, rtol=rtol, deterministic=deterministic,
                         cudnn_algo=cudnn_algo, noise_floor=noise_floor, local=local, keep_fp32=names(keep_fp32),
                         exclude_int8=names(exclude_int8), seed=seed, memory_budget_mb=memory_budget,
                         device_budget_mb=device_budget, lockstep_mode=lockstep_mode, tolerance_mode=mode,
                         metric=_metric(metric))


def _metric(metric: Any):
    """`--metric` as eval reads it (`samples/tasks.task_metric`); a function given by the library as it is."""
    if metric is None or callable(metric):
        return metric
    from cp_debug.samples.tasks import task_metric

    return task_metric(metric)


def bisect_request(pairs: Pairs, subject: SubjectRequest, options: "BisectOptions",
                   calib: Sequence[Samples] | None = None) -> BisectRequest:
    """The groups as one request, the recipe's refusals said before anything loads."""
    calib = calibration_group(calib, subject, pairs)
    check_recipe(subject, pairs)
    return BisectRequest(pairs=tuple(pairs), subject=subject, options=options, calib=calib)


def names(text: "str | Sequence[str] | None") -> tuple[str, ...]:
    """Node names as `--keep-fp32` spells them ("a,b") or a list of them."""
    items = text.split(",") if isinstance(text, str) else (text or ())
    return tuple(t.strip() for t in items if t.strip())


def check_recipe(request: SubjectRequest, pairs: Pairs) -> None:
    """What the recipe does not take (its `check_bisect`: TransFusion-L refuses a kit's results), said before anything
    loads; the options a recipe refuses by their flags the command line says (`cli/common/preflight.refuse_options`)."""
    from cp_debug.recipes.catalog import recipe

    m = request.model
    if m is None:
        return
    check = recipe(request.recipe).check_bisect
    if check is not None:
        check(m, pairs)
