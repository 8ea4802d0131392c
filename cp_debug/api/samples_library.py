"""`cp_debug.sweep` and `cp_debug.eval`: any one-graph model over a list of samples, by the request `cpdebug sweep|eval
--torch|--onnx` builds (`samples_request.SampleRun`) and the same loading; the samples (arrays) are written as the
one-.npz-per-sample folder `--inputs DIR` names, for the run."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp_debug.errors import BadInputError

if TYPE_CHECKING:
    from cp_debug.api.sample_reports import EvalReport, SweepReport


def sweep(model: Any, samples: Any, backends: "str | Sequence[str] | None" = None, *, out: "str | Path | None" = None,
          level: str | None = None, bisect_top: int = 3, shard_size: int = 8, resume: bool = False,
          atol: float | None = None, rtol: float | None = None, tolerance_mode: str | None = None, seed: int = 0,
          exporter: str = "auto", deterministic: bool = True, calib: "str | Path | Sequence[str | Path] | None" = None,
          metric: "str | Callable | None" = None) -> "SweepReport":
    """Every sample through the reference and the candidates, ranked worst first, the worst `bisect_top` bisected —
    `cpdebug sweep --torch|--onnx` with the same options (default backends: torch,ort-cpu-fp16 for a module,
    ort-cpu,ort-cpu-fp16 for an ONNX model). `out`: the sweep's folder (sweep.json, shards), else a temporary one.
    `metric`: the application's decision per sample (`--metric`: a built-in's name, FILE.py:FUNC or a function)."""
    from cp_debug.api.sample_reports import SweepReport
    from cp_debug.api.samples_request import load
    from cp_debug.files import write_json
    from cp_debug.sweep.samples import SampleSweepOptions, run_sample_sweep, sweep_doc
    from cp_debug.sweep.shards import locked

    task = _task(metric) if metric is not None else None
    with _sample_run(model, samples, backends, atol=atol, rtol=rtol, tolerance_mode=tolerance_mode, seed=seed,
                     exporter=exporter, deterministic=deterministic, calib=calib) as run, \
            _folder(out) as folder:
        steps = _Steps()
        loaded, sample_set, pairs, mode = load(run, steps, None)
        opts = SampleSweepOptions(pairs, folder, shard_size=shard_size, resume=resume, bisect_top=bisect_top,
                                  level=level, tolerance_mode=mode, atol=atol, rtol=rtol, seed=seed,
                                  deterministic=deterministic, calib=run.calib, metric=task)
        with locked(opts.out):
            result = run_sample_sweep(loaded, sample_set, opts, step=steps.step)
            doc = sweep_doc(result, opts, loaded)
            write_json(opts.out / "sweep.json", doc)
        return SweepReport(doc, result.reports, folder if out is not None else None)


def _task(metric: "str | Callable"):
    """A metric as the library takes it: a function, a built-in's name or FILE.py:FUNC (`samples.tasks`)."""
    from cp_debug.samples.tasks import TaskMetric, task_metric

    return TaskMetric(getattr(metric, "__name__", "metric"), metric) if callable(metric) else task_metric(metric)


def eval(model: Any, samples: Any, backends: "str | Sequence[str] | None" = None, *,
         metric: "str | Callable", bootstrap: int = 1000, atol: float | None = None,
         rtol: float | None = None, tolerance_mode: str | None = None, seed: int = 0, exporter: str = "auto",
         calib: "str | Path | Sequence[str | Path] | None" = None) -> "EvalReport":
    """A task metric per backend over the samples, with its interval, and the samples whose result changed — `cpdebug
    eval --torch|--onnx --metric` with the same options; `metric`: a built-in's name, FILE.py:FUNC, or a function
    `fn(outputs, reference, label) -> float` (higher is better)."""
    from cp_debug.api.sample_reports import EvalReport
    from cp_debug.api.samples_request import load
    from cp_debug.eval.samples import run_samples_eval

    scorer = _task(metric)
    with _sample_run(model, samples, backends, atol=atol, rtol=rtol, tolerance_mode=tolerance_mode, seed=seed,
                     exporter=exporter, calib=calib) as run:
        loaded, sample_set, pairs, mode = load(run, _Steps(), None)
        report = run_samples_eval(loaded, sample_set, pairs, scorer, resamples=bootstrap, seed=seed, mode=mode,
                                  atol=atol, rtol=rtol, calib=run.calib)
        return EvalReport(report, {**report.to_json(), "model": loaded.source})


@contextlib.contextmanager
def _sample_run(model, samples, backends, *, calib=None, deterministic: bool = True, **options):
    """The SampleRun of what the caller gave: the model as the bisect library takes it (`library._model_given`), the
    samples a folder of one .npz each (or the path given), the backends as the command spells them."""
    from cp_debug.api.library import _model_given
    from cp_debug.api.samples_request import SampleRun

    if isinstance(backends, (list, tuple)):
        backends = ",".join(backends)
    first = _first(samples)
    with _samples_folder(samples) as inputs, _model_given(model, first, None) as (torch_model, onnx_model):
        yield SampleRun(torch_model, onnx_model, inputs, None, options.pop("exporter"), options.pop("seed"), backends,
                        options.pop("tolerance_mode"), options.pop("atol"), options.pop("rtol"), quiet=True,
                        deterministic=deterministic, calib=_paths(calib))


def _paths(calib):
    """`calib=` as the commands' `--calib` takes it: one path or several (each a .npz or a folder of them)."""
    if calib is None:
        return None
    return Path(calib) if isinstance(calib, (str, os.PathLike)) else tuple(map(Path, calib))


def _first(samples):
    """The first sample (a module's example inputs where none is given)."""
    if isinstance(samples, (str, os.PathLike)):
        return None
    if isinstance(samples, Mapping) or not isinstance(samples, (list, tuple)) or not samples:
        raise BadInputError("samples: give a list of samples (each a dict name → array, or a tuple of arrays), or "
                            "a folder of .npz files")
    return samples[0]


@contextlib.contextmanager
def _samples_folder(samples):
    """`--inputs DIR` of the samples: each written as DIR/sample_NNNN.npz (a path given is used as it is)."""
    import numpy as np

    from cp_debug.api.library import _feed

    if isinstance(samples, (str, os.PathLike)):
        yield Path(samples)
        return
    with tempfile.TemporaryDirectory(prefix="cpdebug_samples_") as folder:
        width = len(str(len(samples) - 1))
        for i, sample in enumerate(samples):
            np.savez(Path(folder) / f"sample_{i:0{width}d}.npz", **_feed(sample))
        yield Path(folder)


@contextlib.contextmanager
def _folder(out):
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="cpdebug_sweep_") as folder:
        yield Path(folder)


class _Steps:
    """A sample run's steps, said nowhere (the library's caller reads the report)."""

    @contextlib.contextmanager
    def step(self, text: str, final: bool = True):
        yield

    def note(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass
