"""Segment-by-segment execution of one ONNX stage: the reference and every candidate in lockstep.

The stage's graph is cut after each probe tensor (in node order) into segments. Segment by segment:
the reference runs on its own values (and a second time, on a chain of its own, for the noise floor); each
candidate runs on *its* upstream values (propagated error) and, where those differ from the reference's,
on the reference's (local error: the segment alone, on the reference's boundary; not run where it would repeat
what is held: a float16 lane's segment that only moves or compares elements gives the reference's outputs rounded,
one fed the reference's values rounded already gave them, one that no probe reads is read by no one; with `defer`,
none until a probe is off: `catch_up` runs them where a verdict reads them, `local_deferred.py` says where). Every probe
is handed to the caller as soon as its segment has run, and a tensor is dropped once no later segment reads it.
An FP16 candidate's values cross every cut in float16, as the deployed graph holds them: its segments take
and return float16 (`fp16_io`; on the CPU every tensor inside a segment rounded after its node, as the whole graph's
emulation rounds it: `ort_runner`) and its chain holds float16 arrays (half the memory and half the transfers, no
rounding pass). Only a lane with nodes kept in FP32 keeps float32 edges, rounded at the cut (`as_stored`) except
the kept nodes' own outputs: a kept node's float32 output reaches its consumers unrounded, as in the deployed
graph (on the CPU and on CUDA alike). Host memory of every
session (a CPU session's tensors, a CUDA session's outputs) comes from one shared arena (`shared_arena`), not a
fresh one per segment: on the H100 that alone took the ORT time of an awml-base `--level all` lockstep from
21 s to 9 s (fresh pages for every output).

Memory is therefore bounded by the tensors live across one cut (skip connections, say) plus one segment's
working set, per chain — not by every activation of both backends at once, which is what marking every
tensor as an output costs (polygraphy `--onnx-outputs mark all`). Where a candidate's boundary values are
bit-identical to the reference's, the arrays are shared and the local run is the propagated one.
The cut itself (segment plan, standalone segment models) is graph work: `cp_debug.graph.plan`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from cp_debug.backends.graph_loader import PrecisionTransform
from cp_debug.backends.ort.ort_precision import (GraphFacts, merge_graph_facts, merge_transforms,
                                             precision_report_from_facts)
from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.run_state import NullProgress
from cp_debug.bisect.stages.lane_values import (all_shared, as_stored, half_feed, moves_only, rounded_into,
                                                same_type, share_if_identical)
from cp_debug.graph.plan import Segment, SegmentPlan, plan_segments, segment_model, tensor_types
from cp_debug.half import as_float32

__all__ = ["Lane", "Lockstep", "ProbeValues", "Segment", "SegmentPlan", "lane_precision", "lane_transform",
           "lockstep_supported", "plan_segments"]


DEFERRED = object()  # a lane's local run put off (`Lockstep.defer`): its probes' local values not measured yet


# -- running -------------------------------------------------------------------------------------------------
@dataclass
class Lane:
    """One candidate's chain of values through the stage."""

    label: str
    spec: BackendSpec
    env: dict[str, np.ndarray]
    runner_kwargs: dict = field(default_factory=dict)  # keep_fp32_nodes, exclude_int8_nodes, …
    facts: list[GraphFacts] = field(default_factory=list)  # ORT graph facts of every segment session
    transforms: list[PrecisionTransform] = field(default_factory=list)
    amax: dict[str, float] = field(default_factory=dict)  # INT8: calibrated amax per tensor
    settings: dict | None = None
    seconds: float = 0.0
    # tensors whose value in `env` is the reference's as the lane stores it (float16), value for value: a segment that
    # reads only these is fed the values of the reference's boundary already (`Lockstep._rounding_exact`)
    as_reference: set[str] = field(default_factory=set)

    def kept_tensors(self, model: onnx.ModelProto) -> frozenset[str]:
        """The outputs of the nodes this lane keeps in FP32: the deployed graph holds them in float32, so they cross
        a cut unrounded (rounding a kept logit of 1.7e5 to float16 would make the very inf the user cured)."""
        keep = set(self.runner_kwargs.get("keep_fp32_nodes") or ())
        return frozenset(t for n in model.graph.node if n.name in keep for t in n.output if t)


@dataclass(frozen=True)
class ProbeValues:
    """A probe tensor's values as one segment left them; None where a run was not needed."""

    tensor: str
    reference: np.ndarray
    noise: np.ndarray | None  # the reference's second chain (noise floor); None when not measured here
    propagated: dict[str, np.ndarray]  # label -> the candidate's value on its own upstream values
    local: dict[str, np.ndarray | None]  # label -> on the reference's boundary (the propagated array itself
    # when the boundary was bit-identical); None when local error is off
    upstream: tuple[str, ...]


class Lockstep:
    """Runs `plan`'s segments for a reference spec and candidate lanes; see the module docstring."""

    UNITS = "segments"  # what `_schedule`'s units are, as the progress bar counts them

    def __init__(self, model: onnx.ModelProto, plan: SegmentPlan, reference: BackendSpec, lanes: list[Lane], *,
                 determinism, noise: bool, local: bool, progress=None, stop_after_probes: bool = False):
        self.model = model
        self.plan = plan
        self.reference = reference
        self.lanes = lanes
        self.det = determinism
        self.noise = noise
        self.local = local
        self.progress = progress if progress is not None else NullProgress()
        self.stop_after_probes = stop_after_probes
        self.types = tensor_types(model)
        self._inits = {i.name: i for i in model.graph.initializer}
        self.kept = {lane.label: lane.kept_tensors(model) for lane in lanes}
        self._exact: dict[int, bool] = {}  # segment index -> `lane_values.moves_only`
        # local runs put off until a probe is off (`local_deferred.py`): whether, whether one was, and where
        self.defer, self.armed = False, False
        self.deferred: dict[int, dict[str, bool]] = {}  # segment index -> {lane label: its local run is a rounding}

    def run(self, ref_feed: dict[str, np.ndarray], on_probe: Callable[[ProbeValues], None],
            label: str = "") -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        """Run every segment; returns (reference graph outputs, {lane label: graph outputs}), float32 where
        a lane's chain held float16."""
        ref_env = {t: np.asarray(ref_feed[t]) for t in self.plan.graph_inputs}
        noise_env = dict(ref_env) if self.noise else None
        for lane in self.lanes:
            lane.env = {t: share_if_identical(np.asarray(lane.env[t]), ref_env[t]) for t in self.plan.graph_inputs}
        units, last_use = self._schedule(ref_env)
        if self.stop_after_probes:
            units = units[:max((k for k, seg in enumerate(units) if seg.probes), default=-1) + 1]
        # one bar with ETA over the stage's units (a finished line where stderr is no terminal)
        with self.progress.bar(f"{label}{self.UNITS}", len(units)) as advance:
            for k, seg in enumerate(units):
                self._run_unit(k, seg, ref_env, noise_env, on_probe)
                _drop_past(last_use, k, ref_env, noise_env, *(lane.env for lane in self.lanes))
                advance()
        outs = self.plan.graph_outputs
        return ({t: ref_env[t] for t in outs if t in ref_env},
                {lane.label: {t: as_float32(lane.env[t]) for t in outs if t in lane.env} for lane in self.lanes})

    def catch_up(self, ref_feed: dict[str, np.ndarray], on_local: Callable[[ProbeValues], None],
                 label: str = "") -> None:
        """The local runs put off (`deferred`, `local_deferred.py`): the reference once more over the segments up to
        the last of them (the noise chain beside it as `run` keeps it), each put-off lane's segment on the
        reference's boundary, its probes given to `on_local` (their local values; `propagated` empty)."""
        if not self.deferred:
            return
        last = max(self.deferred)
        env = {t: np.asarray(ref_feed[t]) for t in self.plan.graph_inputs}
        noise_env = dict(env) if self.noise else None
        segments = [seg for seg in self.plan.segments if seg.index <= last]
        with self.progress.bar(f"{label}local errors", len(segments)) as advance:
            for seg in segments:
                self._caught_up(seg, env, noise_env, on_local)
                _drop_past(self.plan.last_use, seg.index, env, noise_env)
                advance()
        self.deferred.clear()

    def _caught_up(self, seg: Segment, env: dict, noise_env: dict | None, on_local) -> None:
        ref_in = {t: env[t] for t in seg.inputs}
        model = segment_model(self.model, seg, ref_in, self.types, self._inits)
        put = self.deferred.get(seg.index, {})
        with self._runner(self.reference, model, {}, None, facts=False) as ref_runner:
            ref_out = ref_runner.infer(ref_in)
            env.update(ref_out)
            local = {}
            for lane in (lane for lane in self.lanes if lane.label in put):
                calib = [ref_in] if lane.spec.calibrated else None
                with self._runner(lane.spec, model, lane.runner_kwargs, calib, fp16_io=self._native_half(lane),
                                  facts=False) as r:
                    local[lane.label] = self.local_run(lane, r, ref_in, ref_out, put[lane.label])
            if local:
                values = [ProbeValues(t, ref_out[t], None, {}, {k: out[t] for k, out in local.items()},
                                      self.plan.upstream.get(t, ())) for t in seg.probes]
                self.give(seg, values, ref_out, ref_runner, noise_env, on_local)
            elif noise_env is not None:
                noise_env.update(ref_out)

    def _native_half(self, lane: Lane) -> bool:
        """Whether `lane`'s segments take and return float16 (see the module docstring): FP16 lanes unless nodes
        are kept in FP32 (a kept node's float32 output must reach its consumers unrounded, so those lanes keep
        float32 edges)."""
        return lane.spec.precision == "fp16" and not lane.runner_kwargs.get("keep_fp32_nodes")

    def _schedule(self, ref_env: dict) -> tuple[list[Segment], dict[str, int]]:
        """What `run` runs, in order (its units: `UNITS` on the progress bar), and tensor -> the last unit that
        reads it."""
        return list(self.plan.segments), self.plan.last_use

    def _run_unit(self, k: int, seg: Segment, ref_env: dict, noise_env: dict | None, on_probe) -> None:
        self._segment(seg, ref_env, noise_env, on_probe)

    def reference_values(self, ref_feed: dict[str, np.ndarray], tensors: Sequence[str]) -> dict[str, np.ndarray]:
        """Re-run the reference alone until `tensors` are known (for bug-report bundles); keeps only those."""
        want = set(tensors)
        env = {t: np.asarray(ref_feed[t]) for t in self.plan.graph_inputs}
        got = {t: env[t] for t in want if t in env}
        for seg in self.plan.segments:
            if want <= set(got):
                break
            out = self._run(self.reference, seg, env, {})
            env.update(out)
            got.update({t: v for t, v in out.items() if t in want})
            for t in [t for t in env if self.plan.last_use.get(t, -1) <= seg.index and t not in want]:
                del env[t]
        return got

    # -- one segment -------------------------------------------------------------------------------------
    def _segment(self, seg: Segment, ref_env: dict, noise_env: dict | None, on_probe) -> None:
        ref_in = {t: ref_env[t] for t in seg.inputs}
        model = segment_model(self.model, seg, ref_in, self.types, self._inits)
        with self._runner(self.reference, model, {}, None, facts=False) as ref_runner:
            ref_out = ref_runner.infer(ref_in)
            ref_env.update(ref_out)
            local: dict[str, dict | None] = {}
            for lane in self.lanes:
                t0 = time.perf_counter()
                lane_in = {t: lane.env[t] for t in seg.inputs}
                same = all_shared(lane_in, ref_in)
                calib = [ref_in] if lane.spec.calibrated else None
                native = self._native_half(lane)
                with self._runner(lane.spec, self._model_for(model, seg, lane_in, ref_in), lane.runner_kwargs,
                                  calib, fp16_io=native) as r:
                    kept = self.kept.get(lane.label, frozenset())
                    out = r.infer(lane_in) if native else as_stored(lane.spec, r.infer(lane_in), kept=kept)
                    # the lane's own inputs that no later segment reads go before the local run converts the
                    # reference's (to float16, or rounded): on awml-base the neck's concat, 0.19 GiB of peak RSS
                    stored = native and all(lane_in[t] is ref_in[t] or t in lane.as_reference for t in seg.inputs)
                    lane_in = None
                    spare = self._drop_dead_inputs(lane, seg)
                    exact = self.local and native and self._rounding_exact(seg, out, ref_out)
                    if stored and exact:  # its inputs and outputs the reference's, as the lane stores them
                        lane.as_reference.update(seg.outputs)
                    # no local run where no probe reads it (a segment after the last probe), or where it would be fed
                    # what the lane's run was: its values are the lane's
                    if not self.local or not seg.probes or same or stored:
                        local[lane.label] = None
                    elif self.defer and not self.armed:  # run where the verdict asks for it (`local_deferred.py`)
                        self.deferred.setdefault(seg.index, {})[lane.label] = exact
                        local[lane.label] = DEFERRED
                    else:
                        local[lane.label] = self.local_run(lane, r, ref_in, ref_out, exact, spare)
                    del spare
                    self._record(lane, r)
                lane.env.update({t: share_if_identical(v, ref_out[t]) for t, v in out.items()})
                lane.seconds += time.perf_counter() - t0
            off = self._hand_over(seg, ref_out, local, ref_runner, noise_env, on_probe)
            self.armed = self.armed or (self.defer and off)

    def local_run(self, lane: Lane, r, ref_in: dict, ref_out: dict, exact: bool,
                  spare: dict | None = None) -> dict[str, np.ndarray]:
        """`lane`'s segment alone on the reference's boundary `ref_in` (its runner `r`): its outputs."""
        spare = {} if spare is None else spare
        if exact:  # the reference's outputs rounded (what the local run would give), into spare arrays
            return rounded_into(ref_out, spare)
        if self._native_half(lane):  # float16 feeds: the reference's boundary converted, into spare arrays
            return r.infer(half_feed(ref_in, spare))
        kept = self.kept.get(lane.label, frozenset())
        return as_stored(lane.spec, r.infer(as_stored(lane.spec, ref_in, copy=True, kept=kept)), kept=kept)

    def _rounding_exact(self, seg: Segment, out: dict, ref_out: dict) -> bool:
        """Whether a float16 lane's segment on the reference's boundary gives the reference's outputs rounded to
        float16, so that its local run is known without running it: every node moves or compares its float inputs'
        elements and computes none (`lane_values.ROUNDING_EXACT`; round-to-nearest is monotone), and the lane's run
        returned float16 where the reference's is float32, the same type elsewhere (not a float: the same values). On
        awml-base's `--level all` FP16 lockstep: its 26 ReLU segments and its Concat, 27 of 59 local runs (179 ONNX
        Runtime runs → 152), the local pass 11.2-11.4 → 9.9-10.2 CPU s (the whole run's ~44 by ~1)."""
        if not self._exact.setdefault(seg.index, moves_only(self.model, seg)):
            return False
        return all((v.dtype == np.float32 and np.asarray(out[t]).dtype == np.float16)
                   or (v.dtype == np.asarray(out[t]).dtype and not np.issubdtype(v.dtype, np.floating))
                   for t, v in ref_out.items())

    def _drop_dead_inputs(self, lane: Lane, seg: Segment) -> dict[str, np.ndarray]:
        """Drop from `lane`'s chain the inputs of `seg` that no later segment reads (`run` would drop them after
        the segment anyway); returns them."""
        return {t: lane.env.pop(t) for t in seg.inputs if t in lane.env and self.plan.last_use.get(t, -1) <= seg.index}

    def _hand_over(self, seg: Segment, ref_out: dict, local: dict, ref_runner, noise_env: dict | None,
                   on_probe) -> bool:
        """Give `seg`'s probes to `on_probe` (lanes' propagated values in their env, local ones in `local`);
        where a probe asks for it, run the reference once more on the noise chain and give them again. Returns
        whether one asked (a probe off)."""
        values = [ProbeValues(
            t, ref_out[t], None, {lane.label: lane.env[t] for lane in self.lanes},
            {lane.label: self._local_value(lane, local[lane.label], t) for lane in self.lanes},
            self.plan.upstream.get(t, ())) for t in seg.probes]
        return self.give(seg, values, ref_out, ref_runner, noise_env, on_probe)

    def give(self, seg: Segment, values: list[ProbeValues], ref_out: dict, ref_runner, noise_env: dict | None,
             on_probe) -> bool:
        """`_hand_over`'s giving: `values` to `on_probe`, again with the noise chain's where one asks."""
        wants_noise = [on_probe(v) for v in values]
        if noise_env is None:
            return any(wants_noise)
        if any(wants_noise):
            # The noise floor matters only where a candidate is off: run the reference again there (on its
            # own second chain) and compare once more with the tolerance the noise allows.
            noise_out = ref_runner.infer({t: noise_env[t] for t in seg.inputs})
            noise_env.update({t: share_if_identical(v, ref_out[t]) for t, v in noise_out.items()})
            for v in values:
                on_probe(replace(v, noise=noise_env[v.tensor]))
        else:  # not measured here: the second chain takes the reference's values
            noise_env.update(ref_out)
        return any(wants_noise)

    def _local_value(self, lane: Lane, local_out: dict | None, t: str):
        """The segment on the reference's boundary: run values, or the propagated ones when the inputs were the
        reference's own arrays (identical), or None when local error is off."""
        if local_out is DEFERRED:
            return None
        if local_out is not None:
            return local_out[t]
        return lane.env[t] if self.local else None

    def _model_for(self, model, seg: Segment, lane_in: dict, ref_in: dict):
        if all(np.shape(lane_in[t]) == np.shape(ref_in[t]) and same_type(np.asarray(lane_in[t]).dtype, ref_in[t].dtype)
               for t in seg.inputs):
            return model
        # the candidate's boundary has another shape: its own model (a shape mismatch the probes will report)
        return segment_model(self.model, seg, lane_in, self.types, self._inits)

    def _run(self, spec: BackendSpec, seg: Segment, env: dict, kwargs: dict) -> dict[str, np.ndarray]:
        feed = {t: env[t] for t in seg.inputs}
        model = segment_model(self.model, seg, feed, self.types, self._inits)
        with self._runner(spec, model, kwargs, [feed] if spec.calibrated else None) as r:
            return r.infer(feed)

    def _runner(self, spec: BackendSpec, model, kwargs: dict, calib, fp16_io: bool = False, facts: bool = True):
        """A segment's session; `facts`: ORT's optimised graph read (the lanes' precision report; the reference's
        are read by no one: on awml-base's 60 segments, 60 optimised graphs written, parsed and dropped)."""
        from cp_debug.backends.ort.ort_runner import OrtRunner

        names = {n.name for n in model.graph.node}
        kw = {k: ([n for n in v if n in names] if k in ("keep_fp32_nodes", "exclude_int8_nodes") else v)
              for k, v in kwargs.items()}  # node lists name nodes of the whole graph: keep this segment's
        if calib is not None:
            kw["calib_feeds"] = calib
        return OrtRunner(model, spec, determinism=self.det, spinning=False, check_model=False, fp16_io=fp16_io,
                         shared_arena=True, graph_facts=facts, **kw)

    @staticmethod
    def _record(lane: Lane, runner) -> None:
        if runner.graph_facts is not None:
            lane.facts.append(runner.graph_facts)
        lane.transforms.append(runner.transform)
        lane.amax.update(runner.quant_amax())
        if lane.settings is None:
            lane.settings = runner.settings()


def _drop_past(last_use: dict[str, int], k: int, *envs: dict | None) -> None:
    """Drop from each chain (None: none kept) the tensors no unit after the `k`-th reads."""
    for env in envs:
        if env is not None:
            for t in [t for t in env if last_use.get(t, -1) <= k]:
                del env[t]


def lane_transform(lane: Lane) -> PrecisionTransform:
    """The precision transform over all of a lane's segments (counts summed)."""
    return merge_transforms(lane.transforms)


def lane_precision(lane: Lane):
    """One PrecisionReport over all of a lane's segment sessions."""
    if not lane.facts:
        return None
    report = precision_report_from_facts(lane.spec, merge_graph_facts(lane.facts), merge_transforms(lane.transforms))
    from cp_debug.backends.ort.ort_precision import HALF_ENV
    from cp_debug.backends.ort.ort_runner import half_mode

    if lane.spec.device == "cpu" and lane.spec.precision == "fp16" and half_mode() == "emulated":
        # what the lane computed is float16 storage: ORT's float32 kernels are its arithmetic (as a GPU accumulates),
        # every value rounded to float16 after its node, inside a segment and where the lockstep cuts the graph
        # (tests/bisect/test_lockstep_deployed.py holds the chain equal to the emulated FP16 pipeline)
        kernels = [n for n in report.notes if "nodes in float32" not in n and "other float ops" not in n
                   and not n.startswith("float16 storage emulated")]  # said once, for the whole lane, below
        return replace(report, effective="fp16", notes=(
            "float16 storage emulated on the CPU: every value rounded to float16 after its node, float32 arithmetic "
            f"(as a GPU accumulates); {HALF_ENV}=native runs ONNX Runtime's own CPU float16", *kernels))
    return report


def lockstep_supported(reference: BackendSpec, candidate: BackendSpec, *, custom_calibration: bool) -> bool:
    """Both can run in lockstep (ONNX Runtime); INT8 / FP8 only when calibrated on the run's own (FP32 reference)
    values."""
    if not (reference.can(Capability.LOCKSTEP) and candidate.can(Capability.LOCKSTEP)):
        return False
    if candidate.calibrated:
        return not custom_calibration and reference.precision == "fp32"
    return True
