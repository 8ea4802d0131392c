"""One experiment on an ONNX backend, judged against reference values: the pieces the keep-FP32 search runs on.

`run_once` builds a backend's runner, runs the feed and says what precision really ran; the reference comes
from ONNX Runtime on the CPU in FP32 (`OrtFp32Reference`, with just the asked tensors exposed) unless the
caller gives the values; `probe_order` is the ONNX-only probe table (every computed float tensor in execution
order, the graph outputs last).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, Union

import numpy as np

from cp_debug.backends import PrecisionReport, make_runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.compare.diff import TensorDiff
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
            from cp_debug.bisect.stages.stand_in import plain_spec

            runner = make_runner(plain_spec("cpu"), onnx_model=self.model, extra_outputs=missing,
                                 determinism=self.determinism, threads=self.threads)
            with runner:
                self._values.update(runner.infer(self.feed))
            self.runs += 1
        return {n: self._values[n] for n in names}


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
    from cp_debug.bisect.subjects.subject import Stage

    outputs = tuple(o.name for o in model.graph.output)
    stage = Stage(name="model", input_names=(), output_names=outputs, onnx_model=model)
    tensors = stage.probe_map().tensors  # a probe's readable name (`module/Op` on dynamo graphs) -> its tensor
    return tuple(tensors.get(p, p) for p in stage.probes_at("all")) + outputs


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


def progress_step(progress, text: str):
    return progress.step(text) if progress is not None else contextlib.nullcontext()


def precision_to_json(p: PrecisionReport | None) -> dict | None:
    return None if p is None else p.to_json()
