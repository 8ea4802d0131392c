"""`cp_debug.fix`: the smallest set of nodes to keep in FP32 (or out of INT8 / FP8) for any one-graph model, by the
request `cpdebug fix --torch|--onnx` builds (`g`: the model, its samples, calibration, shapes, as fix/samples.prepare
takes them) and the same search (`graph_fix`, which the command runs too)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare.noise import Outcome
    from cp_debug.fix.module import GraphFix
    from cp_debug.samples.tasks import TaskMetric


def graph_fix(g: dict, seed: int, spec: "BackendSpec", metric: "str | Callable | TaskMetric | None" = None,
              progress=None):
    """(the fix, the input casts said) of the request `g` (torch, onnx, inputs, data, calib, dynamic, range,
    verify_samples, exporter, candidates) for the candidate `spec`: the model and samples loaded, the search run,
    the fix verified on the held-out samples. `metric`: a task metric besides the precision (a built-in's name,
    FILE.py:FUNC, or a function)."""
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.cures.experiment import progress_step
    from cp_debug.fix.module import REFERENCE, fix_graph
    from cp_debug.fix.samples import prepare
    from cp_debug.recipes.catalog import of_any_model
    from cp_debug.samples.tasks import TaskMetric, task_metric

    task = metric if metric is None or isinstance(metric, TaskMetric) else \
        TaskMetric(getattr(metric, "__name__", "metric"), metric) if callable(metric) else task_metric(metric)
    with progress_step(progress, "loading the model and the samples"):
        m, split, calib, said = prepare(g, seed, (BackendSpec.parse(REFERENCE), spec), of_any_model())
    asked = [c.strip() for c in (g.get("candidates") or "").split(",") if c.strip()] or None
    result = fix_graph(spec, m.model, m.source, split, module_names=set(m.module_names), calib=calib, metric=task,
                       progress=progress, candidates=asked)
    return result, said


def fix(model: Any, samples: Any = None, backends: "str | Sequence[str] | None" = "ort-cpu-fp16", *,
        out: "str | Path | None" = None, metric: "str | Callable | None" = None, verify_samples: int | None = None,
        calib: "str | Path | Sequence[str | Path] | None" = None, candidates: "str | Sequence[str] | None" = None,
        seed: int = 0, exporter: str = "auto") -> "FixReport":
    """`cpdebug fix --torch|--onnx` on `model` over `samples` (a list of samples, as `cp_debug.sweep` takes them;
    None: the model's own example and seeded variants): the candidate (`backends`: its spec, as the command's
    --backends) within its precision of the FP32 graph, the set found verified on held-out samples; `out`: the
    deployable files written there (fix.json, the ONNX pair, a README)."""
    from cp_debug.api.library import _model_given
    from cp_debug.api.samples_library import _first, _samples_folder
    from cp_debug.fix.module import candidate_spec, check_libraries
    from cp_debug.fix.module_files import fix_json, write_graph_fix

    if isinstance(backends, (list, tuple)):
        backends = ",".join(backends)
    if isinstance(candidates, (list, tuple)):
        candidates = ",".join(candidates)
    first = _first(samples) if samples is not None else None
    with _samples_folder(samples) if samples is not None else _nothing() as inputs, \
            _model_given(model, first, None) as (torch_model, onnx_model):
        spec = candidate_spec(backends, torch_given=bool(torch_model))
        check_libraries(spec)
        g = dict(torch=torch_model, onnx=onnx_model, inputs=inputs, data=None, calib=calib, dynamic=None, range=None,
                 verify_samples=verify_samples, exporter=exporter, candidates=candidates)
        result, said = graph_fix(g, seed, spec, metric)
        doc = fix_json(result)
        written = write_graph_fix(Path(out), result, doc) if out is not None and result.fixed is not None else None
        return FixReport(result, {**doc, "out": str(written) if written else None, "input_casts": said}, written)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@dataclass
class FixReport:
    """What `cp_debug.fix(...)` returns: `result` the typed fix (`fix.module.GraphFix`: the search, the fixed graph,
    its verification), `doc` fix.json as the command writes it, `out` the folder written (None: none)."""

    result: "GraphFix"
    doc: dict
    out: Path | None = None

    @property
    def exit_code(self) -> int:
        return int(self.result.exit_code)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def outcome(self) -> "Outcome":
        from cp_debug.compare.noise import Outcome

        return Outcome.WITHIN_PRECISION if self.ok else Outcome.DIVERGED

    @property
    def nodes(self) -> list[str]:
        """The nodes kept in FP32 (FP16) or left out of the quantizer (INT8, FP8, NVFP4)."""
        return list(self.result.search.keep or ())

    @property
    def fixed(self):
        """The fixed graph (an onnx.ModelProto), None where no set was found."""
        return self.result.fixed

    def frame(self) -> "pd.DataFrame":
        """One row per node of the set: its op type and module (fix.json's `set.nodes`)."""
        import pandas as pd

        return pd.DataFrame.from_records((self.doc.get("set") or {}).get("nodes") or [],
                                         columns=["name", "op_type", "module"])

    to_frame = frame

    def to_json(self) -> dict:
        from cp_debug.files import jsonable

        return jsonable(self.doc)

    def summary(self) -> str:
        what = "kept in FP32" if self.result.kind == "fp16" else f"left out of {self.result.kind.upper()}"
        held = "verified on the held-out samples" if self.result.holds else "not verified on the held-out samples"
        if self.result.fixed is None:
            return f"{self.result.spec}: no set of nodes {what} brings it within precision"
        return f"{self.result.spec}: {len(self.nodes)} node(s) {what} ({', '.join(self.nodes) or 'none'}); {held}"

    def __str__(self) -> str:
        return self.summary()

    def __rich__(self):
        from rich.text import Text

        return Text(self.summary())

    def _repr_html_(self) -> str:
        import html

        return f"<p><b>{html.escape(self.summary())}</b></p>" + self.frame().to_html(index=False)
