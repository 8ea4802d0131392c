"""The first bad tensor of a backend, found by marking one tensor (or a few) per run — a `MarkBisect` on a runner.

Marking every probe as an output at once changes what is measured: TensorRT fuses fewer layers, and even ORT's
CPU provider materialises FP16 tensors it would otherwise skip (its Cast pairs around float32-only kernels go).
Marking one tensor per run keeps the rest of the graph as deployed, at ⌈log2(n + 1)⌉ runs for n probes.
Reference values come from ONNX Runtime on the CPU in FP32 (`OrtFp32Reference`), with just the marked
tensors exposed, unless the caller gives them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, Union

import numpy as np

from cp_debug.backends import PrecisionReport, make_runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.search import MarkBisect
from cp_debug.compare.diff import TensorDiff, Tolerance, default_tolerance
from cp_debug.determinism import Determinism
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

Reference = Union[Mapping[str, np.ndarray], Callable[[Sequence[str]], Mapping[str, np.ndarray]]]


class OrtFp32Reference:
    """Reference values on demand: ORT CPU FP32 with exactly the asked tensors exposed, cached by name.

    Called with tensor names, returns their values (graph outputs come along free). Nothing runs until called.
    """

    def __init__(self, model: "onnx.ModelProto", feed: Mapping[str, np.ndarray], *,
                 determinism: Determinism = Determinism(), threads: int | None = None):
        self.model = model
        self.feed = dict(feed)
        self.determinism = determinism
        self.threads = threads
        self.runs = 0
        self._values: dict[str, np.ndarray] = {}

    def __call__(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [n for n in dict.fromkeys(names) if n not in self._values]
        if missing or not self._values:
            runner = make_runner(BackendSpec.parse("ort-cpu-fp32"), onnx_model=self.model, extra_outputs=missing,
                                 determinism=self.determinism, threads=self.threads)
            with runner:
                self._values.update(runner.infer(self.feed))
            self.runs += 1
        return {n: self._values[n] for n in names}


@dataclass(frozen=True)
class MarkingStep:
    """One run: the tensors marked, their diffs against the reference (same order), its wall time."""

    marked: tuple[str, ...]
    diffs: tuple[TensorDiff, ...]
    seconds: float

    @property
    def bad(self) -> tuple[bool, ...]:
        return tuple(is_bad(d) for d in self.diffs)

    def to_json(self) -> dict:
        return {"marked": list(self.marked), "bad": list(self.bad), "seconds": self.seconds,
                "diffs": [d.to_dict() for d in self.diffs]}


@dataclass(frozen=True)
class MarkingResult:
    """Where the backend first goes beyond tolerance, by marking.

    first_bad: the first probe seen bad with the probe before it (`last_good`) seen good; None when none was
        bad. It is the first bad probe overall when badness is monotone along `probes` (see MarkBisect).
    diff: first_bad's TensorDiff. precision: what the backend really ran, from the first run.
    """

    backend: str
    probes: tuple[str, ...]
    first_bad: str | None
    last_good: str | None
    diff: TensorDiff | None
    steps: tuple[MarkingStep, ...]
    tolerance: Tolerance
    precision: PrecisionReport | None = None
    reference_runs: int = 0

    @property
    def runs(self) -> int:
        return len(self.steps)

    def to_json(self) -> dict:
        return {"backend": self.backend, "probes": list(self.probes), "first_bad": self.first_bad,
                "last_good": self.last_good, "diff": self.diff.to_dict() if self.diff else None,
                "runs": self.runs, "reference_runs": self.reference_runs,
                "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol,
                              "max_share": self.tolerance.max_share},
                "precision": precision_to_json(self.precision), "steps": [s.to_json() for s in self.steps]}


def first_bad_by_marking(model: "onnx.ModelProto | str", spec: BackendSpec, feed: Mapping[str, np.ndarray],
                         reference: Reference | None = None, probes: Sequence[str] | None = None,
                         tol: Tolerance | None = None, *, per_run: int = 1, progress=None,
                         runner_options: Mapping | None = None) -> MarkingResult:
    """Binary-search `probes` (default: every computed float tensor, then the graph outputs, in execution order)
    for the first one `spec` gets beyond `tol` (default: by the spec's precision), marking `per_run` per run.

    reference: values by tensor name, or a callable from names to values; default `OrtFp32Reference`.
    runner_options: passed to `make_runner` for every candidate run (e.g. calib_feeds, keep_fp32_nodes).
    """
    from cp_debug.graph.model import check_tensor_names, load_onnx

    model = load_onnx(model)
    order = tuple(probes) if probes is not None else probe_order(model)
    check_tensor_names(model, order)
    tol = tol or default_tolerance(spec.precision)
    ref = reference_lookup(reference, model, feed)
    opts = dict(runner_options or {})
    search = MarkBisect(order, per_run=per_run)
    steps: list[MarkingStep] = []
    precision = None
    while (marked := search.next()) is not None:
        t0 = time.perf_counter()
        out, report = run_once(spec, model, feed, progress, f"{spec}: run {len(steps) + 1}, marking {_short(marked)}",
                               extra_outputs=marked, **opts)
        precision = precision or report
        values = ref(marked)
        diffs = tuple(_diff(name, values, out, tol, spec) for name in marked)
        steps.append(MarkingStep(tuple(marked), diffs, time.perf_counter() - t0))
        search.tell([is_bad(d) for d in diffs])
    found = search.result
    diff = next((d for s in steps for d in s.diffs if d.name == found), None) if found else None
    return MarkingResult(str(spec), order, found, search.last_good, diff, tuple(steps), tol, precision,
                         getattr(ref, "runs", 0))


def run_once(spec: BackendSpec, model: "onnx.ModelProto", feed: Mapping[str, np.ndarray], progress, text: str,
             **opts) -> tuple[dict[str, np.ndarray], PrecisionReport | None]:
    """One experiment: build `spec`'s runner with `opts`, run `feed`, return its outputs and what precision ran."""
    with progress_step(progress, text):
        runner = make_runner(spec, onnx_model=model, **opts)
        with runner:
            out = runner.infer(feed)
        return out, runner.precision_report()


def probe_order(model: "onnx.ModelProto") -> tuple[str, ...]:
    """Every computed float tensor in execution order, the graph outputs last (the ONNX-only probe table)."""
    from cp_debug.bisect.subject import Stage

    outputs = tuple(o.name for o in model.graph.output)
    stage = Stage(name="model", input_names=(), output_names=outputs, onnx_model=model)
    return tuple(stage.probes_at("all")) + outputs


def is_bad(diff: TensorDiff) -> bool:
    """Beyond tolerance, non-finite, or of another shape: anything but "ok"."""
    return diff.status != "ok"


def reference_lookup(reference: Reference | None, model, feed) -> Callable[[Sequence[str]], Mapping[str, np.ndarray]]:
    """A callable from tensor names to reference values, whatever form `reference` came in (None: ORT CPU FP32)."""
    if reference is None:
        return OrtFp32Reference(model, feed)
    if callable(reference):
        return reference
    values = dict(reference)

    def lookup(names: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [n for n in names if n not in values]
        if missing:
            raise BadInputError(f"the reference values lack {', '.join(map(repr, missing[:5]))}")
        return {n: values[n] for n in names}

    return lookup


def _diff(name: str, ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], tol: Tolerance,
          spec: BackendSpec) -> TensorDiff:
    if name not in out:
        raise BadInputError(f"{spec} has no tensor {name!r} after its precision transform (removed, e.g. a ReLU "
                            "folded into quantization): leave it out of the probes")
    return TensorDiff.from_arrays(name, ref[name], out[name], tol)


def _short(names: Sequence[str], k: int = 2) -> str:
    shown = ", ".join(names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


def progress_step(progress, text: str):
    return progress.step(text) if progress is not None else contextlib.nullcontext()


def precision_to_json(p: PrecisionReport | None) -> dict | None:
    return None if p is None else {"requested": p.requested, "effective": p.effective, "notes": list(p.notes)}
