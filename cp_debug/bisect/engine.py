"""The bisection engine: propagated error at every probe, local error per segment, ranking, refinement.

Flow, stage by stage (DESIGN.md, "The flow of one cpdebug bisect"):
1. where the reference and a candidate both run in ONNX Runtime, the stage runs *in lockstep*
   (`lockstep.py`): cut into segments at the probes, each segment runs for the reference, then for the
   candidate on its own upstream values (propagated error) and on the reference's (local error); probes are
   compared as they come and dropped, so memory stays bounded at any model size;
2. otherwise (a torch or TensorRT side) the reference runs the stage with the probes exposed (twice, for
   the noise floor) and its values are kept (spilled to disk past the memory budget); the candidate runs the
   stage end to end on its own upstream outputs, each probe compared as it comes, and each probe's segment
   runs alone on the reference's boundary values (local error): the submodule for torch, the extracted ONNX
   subgraph for ONNX Runtime / TensorRT;
3. first divergent and root cause are ranked per candidate, and the engine descends into the root cause's
   children (and the first divergent's) until a leaf, so results name `body.2.0`, not `body`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect import hints as hints_mod
from cp_debug.bisect.ranking import first_divergent, root_cause
from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult, RootCause
from cp_debug.bisect.store import TensorStore
from cp_debug.bisect.subject import LEVELS, Stage, Subject
from cp_debug.compare.diff import TensorDiff, Tolerance, default_tolerance
from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class BisectOptions:
    level: str | None = None  # None: the subject's default
    refine: bool = True
    atol: float | None = None
    rtol: float | None = None
    deterministic: bool = True
    noise_floor: bool = True
    local: bool = True
    calib_feeds: tuple = ()  # feeds of stage 0 for INT8 calibration; default: the run's own inputs
    keep_fp32: tuple[str, ...] = ()  # ONNX node names kept in FP32 by the FP16 transform
    exclude_int8: tuple[str, ...] = ()  # ONNX node names left out of INT8 quantisation
    max_refine_depth: int = 8
    memory_budget_mb: int = 2048
    seed: int = 0
    lockstep: bool = True  # segment-by-segment execution where reference and candidate are both ONNX Runtime


@dataclass
class _ProbeSpec:
    name: str
    stage: int
    kind: str  # module | output | input
    pos: float  # execution order inside the stage
    parent: str | None = None
    depth: int = 0


class _NullProgress:
    @contextlib.contextmanager
    def step(self, text: str):
        yield


@dataclass
class _CandidateState:
    label: str
    spec: BackendSpec
    tol: Tolerance
    results: dict[str, ProbeResult] = field(default_factory=dict)
    feeds: dict[int, dict] = field(default_factory=dict)
    precision: dict | None = None
    settings: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)
    int8_amax: dict = field(default_factory=dict)
    int8_ranges: dict = field(default_factory=dict)  # probe -> hints.int8_range(...), computed while values live
    seconds: float = 0.0
    lockstep: bool = False  # stages run segment by segment with the reference (see lockstep.py)


class BisectEngine:
    def __init__(self, subject: Subject, reference: tuple[str, BackendSpec],
                 candidates: list[tuple[str, BackendSpec]], options: BisectOptions = BisectOptions(),
                 progress=None):
        self.subject = subject
        self.ref_label, self.ref_spec = reference
        self.candidates = candidates
        self.opts = options
        self.progress = progress or _NullProgress()
        from cp_debug.determinism import Determinism

        self.det = Determinism(enabled=options.deterministic, seed=options.seed)
        self.level = options.level or subject.default_level
        if self.level not in LEVELS:
            raise BadInputError(f"unknown probe level {self.level!r}: use one of {', '.join(LEVELS)}")
        self.store = TensorStore(options.memory_budget_mb << 20)
        self.noise: dict[str, TensorDiff] = {}
        self.ref_outputs: dict[int, dict] = {}
        self.ref_feeds: dict[int, dict] = {}
        self.probes: dict[str, _ProbeSpec] = {}
        self.warnings: list[str] = []
        self._states: dict[str, _CandidateState] = {}
        self._lockstep_runs: dict[str, tuple] = {}  # probe -> (stage, Lockstep) of the run that last measured it
        self._ref_cache: dict[str, np.ndarray] = {}
        self._execution: dict[str, str] = {}

    # ---------------------------------------------------------------------------------------------------
    def run(self) -> BisectReport:
        from cp_debug.backends import check_available

        for _, spec in [(self.ref_label, self.ref_spec)] + list(self.candidates):
            check_available(spec)
        needs_onnx = any(s.framework != "torch" for _, s in [(self.ref_label, self.ref_spec)] + self.candidates)
        for st in self.subject.stages:
            if st.module is None and "torch" in (self.ref_spec.framework,) + tuple(s.framework for _, s in self.candidates):
                raise BadInputError(f"stage {st.name!r} has no PyTorch module: use ONNX backends only "
                                    "(e.g. --backends ort,ort-cpu-fp16)")
            if needs_onnx:
                with self.progress.step(f"exporting {st.name} to ONNX"):
                    st.onnx()
                    st.probe_map()
                if st.export_note:
                    self.warnings.append(f"{st.name}: {st.export_note}")
                for w in st.export_warnings:
                    self.warnings.append(f"{st.name}: exporter warning: {w.short()}")
        if needs_onnx:
            self._check_node_lists()
        first = self._level_probes()
        states = [self._new_state(label, spec) for label, spec in self.candidates]
        ref_up: dict = {}
        cand_up: dict[str, dict] = {s.label: {} for s in states}
        for i, st in enumerate(self.subject.stages):
            sp = [p for p in first if p.stage == i]
            self.ref_feeds[i] = self.subject.feed(i, ref_up)
            for s in states:
                s.feeds[i] = self.subject.feed(i, cand_up[s.label])
            locked = [s for s in states if s.lockstep]
            classic = [s for s in states if not s.lockstep]
            ref_out = None
            if classic or not locked:
                ref_out = self._reference_stage(i, sp, noise=self.opts.noise_floor,
                                                capture=any(s.spec.framework == "torch" for s in classic))
                for s in classic:
                    t0 = time.perf_counter()
                    cand_up[s.label].update(self._candidate_stage(s, i, sp, s.feeds[i]))
                    s.seconds += time.perf_counter() - t0
            if locked:
                ls_ref, ls_out = self._lockstep_stage(i, sp, locked)
                ref_out = ref_out if ref_out is not None else ls_ref
                for s in locked:
                    cand_up[s.label].update(ls_out[s.label])
            self.ref_outputs[i] = {k: ref_out[k] for k in st.output_names}
            ref_up.update(self.ref_outputs[i])
        cands = [self._conclude(s, first) for s in states]
        return self._report(cands)

    def _check_node_lists(self) -> None:
        """--keep-fp32 / --exclude-int8 name nodes of the stages' graphs (each stage takes its own)."""
        names = {n.name for st in self.subject.stages for n in st.onnx().graph.node}
        for flag, given in (("--keep-fp32", self.opts.keep_fp32), ("--exclude-int8", self.opts.exclude_int8)):
            unknown = [n for n in given if n not in names]
            if unknown:
                raise BadInputError(f"{flag} names node(s) not in the ONNX graph: {', '.join(unknown[:3])}"
                                    f"{' …' if len(unknown) > 3 else ''} (node names as in the exported ONNX)")

    def close(self) -> None:
        """Drop the reference tensors (kept after run() for bundles); also done when the engine is collected."""
        self.store.close()
        self._lockstep_runs.clear()
        self._ref_cache.clear()

    def root_cause_segment(self, label: str, probe: str) -> tuple[int, dict[str, np.ndarray], str] | None:
        """For an ONNX-mapped probe: (stage index, reference boundary values, target tensor) of its segment."""
        from cp_debug.graph.segment import segment_inputs

        p = self.probes.get(probe)
        if p is None or p.kind == "input":
            return None
        st = self.subject.stages[p.stage]
        pm = st.probe_map()
        tensor = probe if p.kind == "output" else (pm.tensors.get(probe) if pm else None)
        if tensor is None:
            return None
        if probe in self._lockstep_runs:
            stage, ls = self._lockstep_runs[probe]
            seg = ls.plan.segment_of(tensor)
            values = ls.reference_values(self.ref_feeds[stage], list(seg.inputs) + [tensor])
            self._ref_cache[probe] = values[tensor]
            return stage, {t: values[t] for t in seg.inputs}, tensor
        known = self._known_tensors(p.stage)
        bnames = segment_inputs(st.onnx(), [tensor], set(known) - {tensor})
        feed = {b: np.asarray(self._known_value(p.stage, known[b])) for b in bnames}
        return p.stage, feed, tensor

    def reference_value(self, probe: str) -> np.ndarray:
        if probe in self.store:
            return np.asarray(self.store.get(probe))
        if probe not in self._ref_cache and probe in self._lockstep_runs:
            stage, ls = self._lockstep_runs[probe]
            p = self.probes[probe]
            pm = self.subject.stages[stage].probe_map()
            tensor = probe if p.kind == "output" else pm.tensors[probe]
            self._ref_cache[probe] = ls.reference_values(self.ref_feeds[stage], [tensor])[tensor]
        return np.asarray(self._ref_cache[probe])

    def tolerance_for(self, label: str, probe: str) -> Tolerance:
        return self._tolerance(self._states[label], probe)

    # -- probes --------------------------------------------------------------------------------------------
    def _level_probes(self) -> list[_ProbeSpec]:
        out: list[_ProbeSpec] = []
        for i, st in enumerate(self.subject.stages):
            for name in self.subject.glued_inputs(i):
                out.append(_ProbeSpec(name, i, "input", -1.0))
            tr = st.trace()
            chosen: list[str] = []
            end = 0.0
            if tr is not None:
                pos = {n: k for k, n in enumerate(tr.order)}
                chosen = st.probes_at(self.level)
                for name in chosen:
                    out.append(_ProbeSpec(name, i, "module", float(pos[name]), depth=0))
                end = float(len(tr.order))
            for k, name in enumerate(st.output_names):
                if st.output_aliases.get(name) not in chosen:  # else the module probe stands for it
                    out.append(_ProbeSpec(name, i, "output", end + k))
        for p in out:
            self.probes.setdefault(p.name, p)
        return out

    def _children(self, p: _ProbeSpec, mapped_only: bool) -> list[_ProbeSpec]:
        if p.kind != "module":
            return []
        st = self.subject.stages[p.stage]
        tr = st.trace()
        pos = {n: k for k, n in enumerate(tr.order)}
        kids = []
        for c in st.children(p.name):
            if mapped_only and c not in st.probe_map().tensors:
                # e.g. a conv whose BN was folded: look through to its own children, if any
                continue
            kids.append(_ProbeSpec(c, p.stage, "module", float(pos[c]), parent=p.name, depth=p.depth + 1))
        return kids

    # -- running stages --------------------------------------------------------------------------------------
    def _runner(self, spec: BackendSpec, stage: Stage, probes: list[_ProbeSpec], *, capture_inputs=False,
                calib=None, onnx_model=None, extra_tensors=None):
        from cp_debug.backends import make_runner

        mods = [p.name for p in probes if p.kind == "module"]
        if spec.framework == "torch":
            return make_runner(spec, torch_module=stage.module, input_names=stage.input_names,
                               output_names=stage.output_names, probe_modules=mods,
                               capture_inputs=capture_inputs, determinism=self.det)
        model = onnx_model if onnx_model is not None else stage.onnx()
        if extra_tensors is None:
            pm = stage.probe_map()
            extra_tensors = [pm.tensors[m] for m in mods if pm is not None and m in pm.tensors]
        kwargs = dict(extra_outputs=list(dict.fromkeys(extra_tensors)), determinism=self.det, spinning=False,
                      **self._ort_kwargs(spec, model))
        if spec.precision == "int8":
            kwargs["calib_feeds"] = calib
        return make_runner(spec, onnx_model=model, **kwargs)

    def _probe_values(self, stage: Stage, spec: BackendSpec, outputs: dict, probes: list[_ProbeSpec],
                      feed: dict) -> dict[str, np.ndarray]:
        """Pick each probe's value out of a runner's outputs (torch keys by module, ONNX by tensor)."""
        vals = {}
        pm = stage.probe_map() if spec.framework != "torch" else None
        for p in probes:
            if p.kind == "input":
                vals[p.name] = feed[p.name]
            elif p.kind == "output":
                vals[p.name] = outputs[p.name]
            elif spec.framework == "torch":
                if p.name in outputs:
                    vals[p.name] = outputs[p.name]
            elif pm is not None and p.name in pm.tensors:
                vals[p.name] = outputs[pm.tensors[p.name]]
        return vals

    def _calib(self, index: int) -> list[dict]:
        if index == 0 and self.opts.calib_feeds:
            return list(self.opts.calib_feeds)
        return [self.ref_feeds[index]]

    # -- reference ---------------------------------------------------------------------------------------------
    def _reference_stage(self, i: int, sp: list[_ProbeSpec], *, noise: bool, capture: bool) -> dict:
        """Run the reference over stage i with `sp` exposed and keep their values (torch: inputs too)."""
        st = self.subject.stages[i]
        feed = self.ref_feeds[i]
        with self.progress.step(f"reference {self.ref_label}: {st.name}"):
            runner = self._runner(self.ref_spec, st, sp, capture_inputs=capture, calib=self._calib(i))
            with runner:
                out = runner.infer(feed)
                again = runner.infer(feed) if noise else None
        vals = self._probe_values(st, self.ref_spec, out, sp, feed)
        for name, v in vals.items():
            self.store.put(name, v)
        if capture:
            for key, v in out.items():
                if ":in" in key:
                    self.store.put(key, v)
        if again is not None:
            vals2 = self._probe_values(st, self.ref_spec, again, sp, feed)
            for name, v in vals.items():
                if name in vals2:
                    self.noise[name] = TensorDiff.from_arrays(name, v, vals2[name])
        self._execution.setdefault(st.name, "whole stage, probes exposed")
        return {k: out[k] for k in st.output_names}

    def _tolerance(self, state: _CandidateState, name: str) -> Tolerance:
        tol = state.tol
        nz = self.noise.get(name)
        if nz is not None and nz.max_abs > 0 and math.isfinite(nz.max_abs):
            return Tolerance(max(tol.atol, 4 * nz.max_abs), tol.rtol, tol.max_share)
        return tol

    # -- candidates ------------------------------------------------------------------------------------------
    def _new_state(self, label: str, spec: BackendSpec) -> _CandidateState:
        from cp_debug.bisect.lockstep import lockstep_supported

        o = self.opts
        tol = default_tolerance(spec.precision)
        if o.atol is not None or o.rtol is not None:
            tol = Tolerance(o.atol if o.atol is not None else tol.atol, o.rtol if o.rtol is not None else tol.rtol,
                            tol.max_share)
        state = _CandidateState(label, spec, tol)
        state.lockstep = o.lockstep and lockstep_supported(self.ref_spec, spec, custom_calibration=bool(o.calib_feeds))
        self._states[label] = state
        return state

    def _conclude(self, state: _CandidateState, probes: list[_ProbeSpec]) -> CandidateResult:
        """Rank, refine and explain one candidate's results."""
        t0 = time.perf_counter()
        ordered = self._ordered(state, probes)
        fd = first_divergent(ordered)
        rc = root_cause(ordered, fd)
        path: list[str] = [rc] if rc else []
        if self.opts.refine and rc is not None:
            rc, fd = self._refine(state, rc, fd, path)
        all_probes = [self.probes[n] for n in state.results]
        ordered = self._ordered(state, all_probes)
        hint = self._hint(state, rc) if rc else None
        state.seconds += time.perf_counter() - t0
        return CandidateResult(
            label=state.label, spec=str(state.spec), results=ordered, first_divergent=fd,
            root_cause=RootCause(rc, hint) if rc else None, path=path, precision=state.precision,
            outputs_within_tolerance=self._outputs_ok(state), wall_s=round(state.seconds, 3))

    def _outputs_ok(self, state: _CandidateState) -> bool:
        last = self.subject.stages[-1]
        names = [last.output_aliases.get(n, n) if n not in state.results else n for n in last.output_names]
        return all(state.results[n].status == "ok" for n in names if n in state.results)

    def _ordered(self, state: _CandidateState, probes: list[_ProbeSpec]) -> list[ProbeResult]:
        seen = []
        for p in sorted(probes, key=lambda p: (p.stage, p.pos)):
            if p.name in state.results and p.name not in seen:
                seen.append(p.name)
        return [state.results[n] for n in seen]

    def _candidate_stage(self, state: _CandidateState, i: int, sp: list[_ProbeSpec], feed: dict) -> dict:
        st = self.subject.stages[i]
        spec = state.spec
        with self.progress.step(f"{state.label}: {st.name} ({len(sp)} probes)"):
            runner = self._runner(spec, st, sp, calib=self._calib(i))
            with runner:
                out = runner.infer(feed)
                rep = runner.precision_report()
                if rep is not None:
                    self._merge_precision(state, st.name, rep)
                state.settings.setdefault(st.name, runner.settings())
                if hasattr(runner, "quant_amax"):
                    with contextlib.suppress(Exception):
                        state.int8_amax.update(runner.quant_amax() or {})
                vals = self._probe_values(st, spec, out, sp, feed)
                stage_out = {k: out[k] for k in st.output_names}
                del out
                diffs = {}
                for p in sp:
                    if p.name not in self.store:
                        continue
                    if p.name not in vals:
                        state.results[p.name] = ProbeResult(p.name, "missing",
                                                            note=self._unmapped_note(st, p.name, spec))
                        continue
                    ref = self.store.get(p.name)
                    d = TensorDiff.from_arrays(p.name, ref, vals[p.name], self._tolerance(state, p.name))
                    diffs[p.name] = d
                    self._keep_plot(state, p.name, ref, vals[p.name])
                    vals.pop(p.name)
                local = self._local_errors(state, i, sp, runner) if self.opts.local else {}
        for p in sp:
            if p.name in diffs:
                loc, _ = local.get(p.name, (None, ()))
                state.results[p.name] = ProbeResult(p.name, diffs[p.name].status, diffs[p.name], loc)
        for name, (_, upstream) in local.items():
            if name in state.results:
                state.results[name] = replace(state.results[name],
                                              amplification=self._amplification(state, name, upstream))
        return stage_out

    def _lockstep_stage(self, i: int, sp: list[_ProbeSpec], states: list[_CandidateState], *,
                        refine: bool = False) -> tuple[dict, dict[str, dict]]:
        """Stage i segment by segment for the reference and `states` together (lockstep.py); results are
        recorded as each segment's probes come out. Returns (reference outputs, {label: outputs})."""
        from cp_debug.bisect import lockstep as ls_mod

        st = self.subject.stages[i]
        pm = st.probe_map()
        by_tensor: dict[str, list[_ProbeSpec]] = {}
        for p in sp:
            if p.kind == "input":
                for s in states:
                    self._record(s, p.name, self.ref_feeds[i][p.name], s.feeds[i][p.name], None, ())
                continue
            tensor = p.name if p.kind == "output" else (pm.tensors.get(p.name) if pm else None)
            if tensor is None:
                for s in states:
                    s.results[p.name] = ProbeResult(p.name, "missing", note=self._unmapped_note(st, p.name, s.spec))
                continue
            by_tensor.setdefault(tensor, []).append(p)
        model = st.onnx()
        plan = ls_mod.plan_segments(model, list(by_tensor))
        for t in plan.missing:
            for p in by_tensor.pop(t):
                for s in states:
                    s.results[p.name] = ProbeResult(p.name, "missing", note="no ONNX node computes this tensor")
        lanes = [ls_mod.Lane(s.label, s.spec, dict(s.feeds[i]), self._ort_kwargs(s.spec)) for s in states]
        runner = ls_mod.Lockstep(model, plan, self.ref_spec, lanes, determinism=self.det,
                                 noise=self.opts.noise_floor, local=self.opts.local, progress=self.progress,
                                 stop_after_probes=refine)
        by_label = {s.label: s for s in states}
        name_of = {t: ps[0].name for t, ps in by_tensor.items()}
        name_of.update({n: n for n in st.input_names})

        def on_probe(pv: ls_mod.ProbeValues) -> bool:
            """Compare one probe tensor for every candidate; True asks for the reference's noise floor here."""
            names = [p.name for p in by_tensor[pv.tensor]]
            if pv.noise is not None:
                for n in names:
                    self.noise[n] = TensorDiff.from_arrays(n, pv.reference, pv.noise)
            upstream = self._upstream_names(i, pv.tensor, states) or tuple(name_of[u] for u in pv.upstream
                                                                          if u in name_of)
            off = False
            for lane in lanes:
                s = by_label[lane.label]
                if s.spec.precision == "int8" and pv.tensor in lane.amax:
                    s.int8_ranges[names[0]] = hints_mod.int8_range(pv.reference, float(lane.amax[pv.tensor]))
                for n in names:
                    d = self._record(s, n, pv.reference, pv.propagated[lane.label], pv.local[lane.label], upstream)
                    off = off or d.status != "ok"
                    self._lockstep_runs[n] = (i, runner)
            return off and pv.noise is None

        ref_out, outs = runner.run(self.ref_feeds[i], on_probe, label=f"{st.name}: ")
        for s, lane in zip(states, lanes):
            rep = ls_mod.lane_precision(lane) if not refine else None  # a refinement re-runs part of the stage
            if rep is not None:
                self._merge_precision(s, st.name, rep)
            if lane.settings is not None:
                s.settings.setdefault(st.name, {**lane.settings, "extra_outputs": 0,
                                                "precision_transform": ls_mod.lane_transform(lane)})
            s.int8_amax.update(lane.amax)
            s.seconds += lane.seconds
        if not refine:
            self._execution[st.name] = f"lockstep, {len(plan.segments)} segments"
        return ref_out, outs

    def _upstream_names(self, i: int, tensor: str, states: list[_CandidateState]) -> tuple[str, ...]:
        """The nearest probes (of any pass so far) that `tensor` depends on: what amplification divides by."""
        from cp_debug.graph.segment import segment_inputs

        st = self.subject.stages[i]
        pm = st.probe_map()
        measured = set().union(*(s.results for s in states)) if states else set()
        known = {n: n for n in st.input_names}
        for name in measured:
            p = self.probes.get(name)
            if p is not None and p.stage == i and p.kind == "module" and name in pm.tensors:
                known.setdefault(pm.tensors[name], name)
        try:
            found = segment_inputs(st.onnx(), [tensor], set(known) - {tensor})
        except BadInputError:
            return ()
        return tuple(known[t] for t in found if known[t] in measured or t in st.input_names)

    def _record(self, s: _CandidateState, name: str, ref, value, local_value, upstream: tuple) -> TensorDiff:
        """Store one probe's propagated (and local) error for a candidate; returns the propagated diff."""
        tol = self._tolerance(s, name)
        d = TensorDiff.from_arrays(name, ref, value, tol)
        loc = None
        if local_value is value:
            loc = d
        elif local_value is not None:
            loc = TensorDiff.from_arrays(name, ref, local_value, tol)
        if name not in s.plots:
            self._keep_plot(s, name, ref, value)
        s.results[name] = ProbeResult(name, d.status, d, loc)
        if upstream:
            s.results[name] = replace(s.results[name], amplification=self._amplification(s, name, list(upstream)))
        return d

    def _ort_kwargs(self, spec: BackendSpec, model=None) -> dict:
        """The precision transform's node lists for `spec`: those of `model`'s nodes (a stage's graph or a
        segment of it); every listed node when no model is given (lockstep filters per segment itself)."""
        pick = (lambda nodes: _in_graph(nodes, model)) if model is not None else list
        kw: dict = {}
        if spec.precision == "int8":
            kw["exclude_int8_nodes"] = pick(self.opts.exclude_int8)
        if spec.precision in ("fp16", "bf16"):
            kw["keep_fp32_nodes"] = pick(self.opts.keep_fp32)
        return kw

    @staticmethod
    def _merge_precision(state: _CandidateState, stage: str, rep) -> None:
        """One precision verdict over all stages: any stage that ran something else makes it not honest."""
        notes = [f"{stage}: {n}" for n in rep.notes]
        if state.precision is None:
            state.precision = {"requested": rep.requested, "effective": rep.effective, "notes": notes}
            return
        for n in notes:
            if n not in state.precision["notes"]:
                state.precision["notes"].append(n)
        if rep.effective != rep.requested and state.precision["effective"] == state.precision["requested"]:
            state.precision["effective"] = rep.effective
        elif rep.effective != state.precision["effective"] and rep.effective != rep.requested:
            state.precision["effective"] = "mixed"

    def _unmapped_note(self, st: Stage, name: str, spec: BackendSpec) -> str | None:
        pm = st.probe_map() if spec.framework != "torch" else None
        if pm is not None and name in pm.unmapped:
            return pm.unmapped[name]
        return "no value for this probe"

    def _keep_plot(self, state: _CandidateState, name: str, ref, test) -> None:
        try:
            from cp_debug.compare.plot_data import error_heatmap, error_histogram
        except ImportError:
            return
        ref = np.asarray(ref)
        test = np.asarray(test)
        if ref.shape != test.shape:
            return
        entry = {"histogram": error_histogram(ref, test)}
        entry["histogram"]["probe"] = name
        if ref.ndim in (3, 4) and min(ref.shape[-2:]) >= 8:
            hm = error_heatmap(ref, test)
            hm["probe"] = name
            entry["heatmap"] = hm
        state.plots[name] = entry

    # -- local error -----------------------------------------------------------------------------------------
    def _local_errors(self, state: _CandidateState, i: int, sp: list[_ProbeSpec], runner) -> dict:
        st = self.subject.stages[i]
        spec = state.spec
        out: dict[str, tuple] = {}
        if spec.framework == "torch":
            tr = st.trace()
            for p in sp:
                if p.kind != "module":
                    continue
                keys = sorted((k for k in _store_keys(self.store, p.name)), key=lambda k: int(k.rsplit("in", 1)[1]))
                if not keys:
                    continue
                inputs = tuple(np.asarray(self.store.get(k)) for k in keys)
                try:
                    val = runner.run_submodule(p.name, inputs)
                except Exception as err:  # a submodule that cannot run alone (keyword inputs, say)
                    self.warnings.append(f"{state.label}: local error of {p.name} not computed: {err}")
                    continue
                loc = TensorDiff.from_arrays(p.name, self.store.get(p.name), val, self._tolerance(state, p.name))
                prod = tr.producers.get(p.name)
                out[p.name] = (loc, [prod] if prod else [])
            return out
        # ONNX backends: cut the segment from the nearest known reference tensors to the probe's tensor.
        from cp_debug.backends import make_runner
        from cp_debug.graph.segment import extract_segment, segment_inputs

        model = st.onnx()
        pm = st.probe_map()
        known = self._known_tensors(i)
        for p in sp:
            if p.kind == "input":
                continue
            tensor = p.name if p.kind == "output" else pm.tensors.get(p.name)
            if tensor is None or p.name not in self.store:
                continue
            try:
                bnames = segment_inputs(model, [tensor], set(known) - {tensor})
                feed = {b: np.asarray(self._known_value(i, known[b])) for b in bnames}
                seg = extract_segment(model, feed, [tensor], {tensor: self.store.get(p.name).shape})
                kw = {"determinism": self.det, "spinning": False, **self._ort_kwargs(spec, seg)}
                if spec.precision == "int8":
                    kw["calib_feeds"] = [feed]
                with make_runner(spec, onnx_model=seg, **kw) as r:
                    val = r.infer(feed)[tensor]
            except Exception as err:
                self.warnings.append(f"{state.label}: local error of {p.name} not computed: {err}")
                continue
            loc = TensorDiff.from_arrays(p.name, self.store.get(p.name), val, self._tolerance(state, p.name))
            out[p.name] = (loc, [known[b] for b in bnames if known[b] in self.probes])
        return out

    def _known_tensors(self, i: int) -> dict[str, str]:
        """ONNX tensors of stage i whose reference value is known: tensor -> store key (or feed name)."""
        pm = self.subject.stages[i].probe_map()
        known = {n: n for n in self.subject.stages[i].input_names}
        for name, ps in self.probes.items():
            if ps.stage == i and ps.kind == "module" and name in pm.tensors and name in self.store:
                known[pm.tensors[name]] = name
        return known

    def _known_value(self, i: int, key: str):
        if key in self.store:
            return self.store.get(key)
        return self.ref_feeds[i][key]

    def _amplification(self, state: _CandidateState, name: str, upstream: list[str]) -> float | None:
        """Propagated error out ÷ propagated error in (relative RMS), None where no error flows in."""
        own = state.results[name].diff
        e_in = max((state.results[u].diff.rel_rmse for u in upstream
                    if u in state.results and state.results[u].diff is not None
                    and math.isfinite(state.results[u].diff.rel_rmse)), default=0.0)
        if own is None or e_in <= 0 or not math.isfinite(own.rel_rmse):
            return None
        return own.rel_rmse / e_in

    # -- refinement ------------------------------------------------------------------------------------------
    def _refine(self, state: _CandidateState, rc: str, fd: str | None, path: list[str]) -> tuple[str, str | None]:
        mapped_only = state.spec.framework != "torch" or self.ref_spec.framework != "torch"
        for _ in range(self.opts.max_refine_depth):
            p = self.probes[rc]
            kids = self._children(p, mapped_only)
            if not kids:
                break
            for k in kids:
                self.probes.setdefault(k.name, k)
            stage = p.stage
            if state.lockstep:
                self._lockstep_stage(stage, kids, [state], refine=True)
            else:
                self._reference_stage(stage, kids, noise=False,
                                      capture=state.spec.framework == "torch")
                self._candidate_stage(state, stage, kids, state.feeds[stage])
            sub = self._ordered(state, kids)
            sub_fd = first_divergent(sub)
            sub_rc = root_cause(sub, sub_fd) if sub_fd else None
            if sub_rc is None:
                # No child diverges on its own scale: the error comes from the glue inside `rc` itself.
                best = max((r for r in sub if r.local is not None), key=lambda r: r.local.rel_rmse, default=None)
                if best is None or best.local.rel_rmse <= 0:
                    break
                sub_rc = best.probe
            if fd == rc and sub_fd is not None:
                fd = sub_fd
            rc = sub_rc
            path.append(rc)
        return rc, fd

    # -- hints and the report ----------------------------------------------------------------------------------
    def _hint(self, state: _CandidateState, name: str) -> str | None:
        r = state.results.get(name)
        if r is None:
            return None
        p = self.probes[name]
        st = self.subject.stages[p.stage]
        ref_in = None
        keys = list(_store_keys(self.store, name))
        warn = []
        if p.kind == "module":
            related = {name, *st.trace().descendants(name)} if st.trace() else {name}
            for w in st.export_warnings:
                if related & set(w.modules):
                    warn.append(w.short())
        note = None
        prec = state.precision
        if prec and prec.get("requested") != prec.get("effective"):
            note = f"{state.label} did not run {prec.get('requested')} throughout: " + "; ".join(prec.get("notes") or [])
        int8 = state.int8_ranges.get(name)
        if int8 is None and state.spec.precision == "int8" and state.int8_amax and p.kind == "module":
            pm = st.probe_map()
            t = pm.tensors.get(name) if pm else None
            if t in state.int8_amax and name in self.store:
                int8 = hints_mod.int8_range(np.asarray(self.store.get(name)), float(state.int8_amax[t]))
        ctx = hints_mod.HintContext(
            precision=state.spec.precision, framework=state.spec.framework,
            ref_absmax=r.diff.ref_absmax if r.diff else None, ref_input_absmax=ref_in,
            precision_note=note, export_warnings=tuple(warn), int8_range=int8)
        hint = hints_mod.hint_for(r, ctx)
        spread = self._dominance(state, name)
        if spread is not None:
            hint = (hint + "; " if hint else "") + spread
        return hint

    def _dominance(self, state: _CandidateState, name: str) -> str | None:
        """Say so when the root cause's local error barely stands out from its siblings' (error spread evenly)."""
        p = self.probes[name]
        sibs = [n for n, q in self.probes.items() if q.parent == p.parent and q.stage == p.stage and n != name
                and q.kind == "module" and n in state.results and state.results[n].local is not None]
        r = state.results[name]
        if len(sibs) < 3 or r.local is None or not math.isfinite(r.local.rel_rmse) or r.status == "nan":
            return None
        others = sorted(v for v in (state.results[n].local.rel_rmse for n in sibs) if v > 0 and math.isfinite(v))
        if len(others) < 3:
            return None
        sibs = others
        median = others[len(others) // 2]
        if median > 0 and r.local.rel_rmse < 3 * median:
            return (f"no single layer dominates: this local error is {r.local.rel_rmse / median:.1f}× the median of "
                    f"{len(sibs)} sibling layers — the error accumulates across the network")
        return None

    def _report(self, cands: list[CandidateResult]) -> BisectReport:
        names = []
        for c in cands:
            for r in c.results:
                if r.probe not in names:
                    names.append(r.probe)
        specs = sorted((self.probes[n] for n in names), key=lambda p: (p.stage, p.pos))
        probes = []
        for k, p in enumerate(specs):
            st = self.subject.stages[p.stage]
            pm = st._map
            tensor = p.name if p.kind in ("input", "output") else (pm.tensors.get(p.name) if pm else None)
            probes.append(Probe(k, p.name, tensor, "Input" if p.kind == "input" else
                                ("Output" if p.kind == "output" else st.op_type(p.name)), st.name, p.parent, p.depth))
        plots = {}
        for c in cands:
            kept = self._states[c.label].plots
            key = c.root_cause.probe if c.root_cause else None
            if key in kept:
                plots[c.label] = kept[key]
        settings = {
            "level": self.level, "refine": self.opts.refine, "deterministic": self.opts.deterministic,
            "noise_floor": self.opts.noise_floor, "local_error": self.opts.local, "lockstep": self.opts.lockstep,
            "tolerance": {c.label: _tol_dict(self._states[c.label].tol) for c in cands},
            "determinism": self.det.settings(),
            "noise": {n: d.max_abs for n, d in self.noise.items() if d.max_abs > 0},
            "backends": {c.label: self._states[c.label].settings for c in cands},
            "exporters": {st.name: st.exporter for st in self.subject.stages},
            "execution": dict(self._execution),
        }
        from cp_debug.determinism import environment

        return BisectReport(self.ref_label, cands, probes, settings, environment(),
                            self.subject.description, self.warnings, plots)


def _store_keys(store: TensorStore, name: str):
    k = 0
    while f"{name}:in{k}" in store:
        yield f"{name}:in{k}"
        k += 1


def _in_graph(nodes: tuple[str, ...], model) -> list[str]:
    """The named nodes that `model` (a stage's graph, or a segment cut from it) holds."""
    present = {n.name for n in model.graph.node}
    return [n for n in nodes if n in present]


def _tol_dict(t: Tolerance) -> dict:
    return {"atol": t.atol, "rtol": t.rtol, "max_share": t.max_share}
