"""The lockstep in whole-stage sessions: the same values as `lockstep.py`, a handful of sessions per stage.

On a GPU, building one ONNX Runtime session per segment and side dominates a lockstep run (awml-base at
`--level all` on the H100: minutes, against seconds of inference). Here each side builds sessions of the
whole stage instead (`cp_debug.graph.grouped`):
- the reference: the stage with every probe and cut tensor exposed, run once (and once more for the noise
  floor, when a probe asks for it);
- each candidate, propagated: the same exposed stage on its own inputs;
- each candidate, local: the stage with every cut opened, fed the reference's boundary values at once.
FP16 candidates' values are rounded to float16 where they cross a cut, as in `lockstep.py`. What this costs is
memory: every probe and boundary tensor of the stage is held at once per chain, where the segment lockstep holds
those live across one cut. INT8 lanes (calibrated per segment) and graphs whose subgraphs read a cut tensor
keep the segment lockstep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import onnx

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.lockstep import Lane, ProbeValues, _as_stored, _identical
from cp_debug.graph.grouped import CUT_SUFFIX, crossing_tensors, cut_model, cuts_openable, exposed_model
from cp_debug.graph.plan import SegmentPlan, tensor_types


def grouped_supported(model: onnx.ModelProto, plan: SegmentPlan, lanes: Sequence[Lane]) -> bool:
    if any(lane.spec.precision == "int8" for lane in lanes):
        return False
    return cuts_openable(model, plan)


class GroupedLockstep:
    """Same interface as `lockstep.Lockstep` (`run`, `reference_values`, `plan`)."""

    def __init__(self, model: onnx.ModelProto, plan: SegmentPlan, reference: BackendSpec, lanes: list[Lane], *,
                 determinism, noise: bool, local: bool, progress=None, stop_after_probes: bool = False):
        self.model = model
        self.plan = plan
        self.reference = reference
        self.lanes = lanes
        self.det = determinism
        self.noise = noise
        self.local = local
        self.progress = progress
        self.types = tensor_types(model)
        self.probes = [t for seg in plan.segments for t in seg.probes]
        self.crossing = crossing_tensors(plan)
        wanted = list(dict.fromkeys([*self.probes, *self.crossing, *plan.graph_outputs]))
        self.exposed = exposed_model(model, wanted, self.types)
        self._cut = None

    def run(self, ref_feed: dict[str, np.ndarray], on_probe: Callable[[ProbeValues], bool],
            label: str = "") -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        feed = {t: np.asarray(ref_feed[t]) for t in self.plan.graph_inputs}
        with self._step(f"{label}reference (whole stage, {len(self.probes)} probes exposed)"):
            with self._runner(self.reference, self.exposed, {}) as ref_runner:
                ref = ref_runner.infer(feed)
                noise_runner_feed = feed
                propagated, local = {}, {}
                for lane in self.lanes:
                    with self._step(f"{label}{lane.label} (whole stage)"):
                        propagated[lane.label], local[lane.label] = self._lane(lane, ref, feed)
                values = [ProbeValues(t, ref[t], None, {lb: propagated[lb][t] for lb in propagated},
                                      {lb: (local[lb][t] if local[lb] is not None else
                                            (propagated[lb][t] if self.local else None)) for lb in local},
                                      self.plan.upstream.get(t, ())) for t in self.probes]
                wants_noise = [on_probe(v) for v in values]
                if self.noise and any(wants_noise):
                    with self._step(f"{label}reference again (noise floor)"):
                        again = ref_runner.infer(noise_runner_feed)
                    for v, wants in zip(values, wants_noise):
                        if wants:
                            on_probe(ProbeValues(v.tensor, v.reference, again[v.tensor], v.propagated, v.local,
                                                 v.upstream))
        outs = self.plan.graph_outputs
        for lane in self.lanes:
            lane.env = {t: propagated[lane.label][t] for t in outs if t in propagated[lane.label]}
        return {t: ref[t] for t in outs if t in ref}, {lane.label: lane.env for lane in self.lanes}

    def reference_values(self, ref_feed: dict[str, np.ndarray], tensors: Sequence[str]) -> dict[str, np.ndarray]:
        feed = {t: np.asarray(ref_feed[t]) for t in self.plan.graph_inputs}
        with self._runner(self.reference, self.exposed, {}) as r:
            out = r.infer(feed)
        got = {t: out[t] for t in tensors if t in out}
        got.update({t: feed[t] for t in tensors if t in feed})
        return got

    # -- one candidate -----------------------------------------------------------------------------------
    def _lane(self, lane: Lane, ref: dict, ref_feed: dict) -> tuple[dict, dict | None]:
        t0 = time.perf_counter()
        lane_in = {t: np.asarray(lane.env[t]) for t in self.plan.graph_inputs}
        with self._runner(lane.spec, self.exposed, lane.runner_kwargs) as r:
            prop = _as_stored(lane.spec, r.infer(lane_in))
            self._record(lane, r)
        prop = {t: (ref[t] if t in ref and _identical(v, ref[t]) else v) for t, v in prop.items()}
        same = all(prop[t] is ref[t] for t in self.crossing if t in prop) and all(
            _identical(lane_in[t], ref_feed[t]) for t in lane_in)
        local = None
        if self.local and not same:
            cut = self._cut_model(ref)
            feed = dict(_as_stored(lane.spec, {t: ref_feed[t] for t in self.plan.graph_inputs}, copy=True))
            feed.update({t + CUT_SUFFIX: v for t, v in
                         _as_stored(lane.spec, {t: ref[t] for t in self.crossing if t + CUT_SUFFIX in cut[1]},
                                    copy=True).items()})
            with self._runner(lane.spec, cut[0], lane.runner_kwargs) as r:  # facts: the exposed session's only
                local = _as_stored(lane.spec, r.infer(feed))
        lane.seconds += time.perf_counter() - t0
        return prop, local

    def _cut_model(self, ref: dict):
        if self._cut is None:
            outs = list(dict.fromkeys([*self.probes, *self.plan.graph_outputs]))
            shapes = {t: np.shape(ref[t]) for t in self.crossing if t in ref}
            m = cut_model(self.model, self.plan, self.types, outs, shapes)
            self._cut = (m, {i.name for i in m.graph.input})
        return self._cut

    def _runner(self, spec: BackendSpec, model, kwargs: dict):
        from cp_debug.backends.ort_runner import OrtRunner

        return OrtRunner(model, spec, determinism=self.det, spinning=False, check_model=False, **kwargs)

    def _step(self, text: str):
        import contextlib

        return self.progress.step(text) if self.progress else contextlib.nullcontext()

    @staticmethod
    def _record(lane: Lane, runner) -> None:
        from cp_debug.bisect.lockstep import Lockstep

        Lockstep._record(lane, runner)
