"""A sample run's request — any one-graph model over its samples, for `sweep` and `eval` — and its loading, in one
place for `cpdebug sweep|eval --torch|--onnx` (cli/common/samples.py) and the library's `cp_debug.sweep` /
`cp_debug.eval` (api/samples_library.py): the model loaded and exported once, every sample checked against it once,
the backends parsed."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subjects.loaders import GivenModule
    from cp_debug.export.dynamic import DynamicAxes


@dataclass(frozen=True)
class SampleRun:
    """The options every sample run takes: the model, its samples, the backends and how they are judged. `torch`: a
    FILE.py:FUNC, or a module handed over in-process (the library)."""

    torch: "str | GivenModule | None"
    onnx: Path | None
    inputs: Path | None
    data: str | None
    exporter: str
    seed: int
    backends: str | None
    tolerance_mode: str | None
    atol: float | None
    rtol: float | None
    quiet: bool
    junit: Path | None = None
    deterministic: bool = True
    calib: Path | Sequence[Path] | None = None  # a calibrated candidate's --calib, repeated (samples/calibration.py)
    dynamic: "DynamicAxes | None" = None  # --dynamic: a --torch model's dynamic axes (export/dynamic.py)


def load(run: SampleRun, steps, stream, samples: bool = True, ranged: "DynamicAxes | None" = None):
    """(model, samples, (label, spec) pairs, tolerance mode): the model loaded and exported once, every sample checked
    against its graph once; `samples=False`: the caller makes its own (samples None); `ranged`: the axes a declared
    range moves, a `--torch` model exported dynamic on them."""
    from cp_debug.backends.spec import REF_CANDIDATES, parse_backends
    from cp_debug.bisect.subjects.feeds import npz_shapes
    from cp_debug.compare.noise import check_mode
    from cp_debug.export.dynamic import said_of
    from cp_debug.recipes.catalog import of_any_model
    from cp_debug.samples.sets import check_fit, sample_set

    mode = check_mode(run.tolerance_mode, run.atol, run.rtol)
    default = "torch,ort-cpu-fp16" if run.torch else "ort-cpu,ort-cpu-fp16"
    pairs = tuple(parse_backends(run.backends or default, rule=REF_CANDIDATES))
    if samples and run.inputs is None and run.data is None:
        raise BadInputError("give the samples: --inputs FILE.npz|DIR (one sample per .npz) or --data FILE.py:FUNC")
    if run.calib:
        from cp_debug.bisect.subjects.calib_paths import calib_files

        calib_files(run.calib)  # each --calib there and an .npz: said before the model loads
    with steps.step("loading the model"):
        model = of_any_model().load_module(run.torch, run.onnx, exporter=run.exporter, seed=run.seed, need_feed=False,
                                           dynamic=run.dynamic, shapes=npz_shapes(run.inputs) if run.torch else (),
                                           ranged=ranged, example_at=run.inputs if run.torch else None)
    for line in said_of(model.source.get("dynamic")):
        steps.note(line)
    if run.onnx is not None:
        from cp_debug.bisect.subjects.deployed import refuse_unloadable_given

        refuse_unloadable_given(run.onnx, [spec for _, spec in pairs])  # the file as ONNX Runtime takes it (exit 3)
    with steps.step("checking the deployed files") if any(s.onnx_dir for _, s in pairs) else contextlib.nullcontext():
        pairs = tuple((label, model.deployed_files(spec).spec or spec) if spec.onnx_dir is not None else (label, spec)
                      for label, spec in pairs)
    for _, spec in pairs:
        for line in model.deployed_files(spec).warned if spec.onnx_dir is not None else ():
            steps.warn(line)
    if not samples:
        return model, None, pairs, mode
    given = sample_set(run.inputs, run.data, model.graph)
    check_fit(given, stream)
    return model, given, pairs, mode
