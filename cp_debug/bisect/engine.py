"""The bisection engine: propagated error at every probe, local error per segment, ranking, refinement.

Flow, stage by stage (`cp_debug/bisect/__init__.py`, "The flow of one `cpdebug bisect`"):
1. where the reference and a candidate both run in ONNX Runtime, the stage runs *in lockstep*
   (`lockstep.py`): cut into segments at the probes, each segment runs for the reference, then for the
   candidate on its own upstream values (propagated error) and on the reference's (local error); probes are
   compared as they come and dropped, so memory stays bounded at any model size — except where both run on
   a device whose store tier can hold the probes (CUDA: `placement.device_whole`), which takes step 2;
2. otherwise (a torch or TensorRT side) the reference runs the stage with the probes exposed (twice, for
   the noise floor) and its values are kept (spilled to disk past the memory budget); the candidate runs the
   stage end to end on its own upstream outputs, each probe compared as it comes, and each probe's segment
   runs alone on the reference's boundary values (local error): the submodule for torch, the extracted ONNX
   subgraph for ONNX Runtime / TensorRT;
3. first divergent and root cause are ranked per candidate (after `screen.py` measured the path of any NaN/Inf
   the outputs hide), and the engine descends into the root cause's children until a leaf (`body.2.0`, not `body`).
A `SPEC@DIR` candidate (the user's own deployed files) runs whole stages over its files (`deployed.py`).

Files: `run_state.py` (options, probe specs, candidate states, the reference store: what the parts share),
this file (orchestration and refinement), `stage_whole.py` and `stage_lockstep.py` (stage execution),
`local_error.py`, `record.py` (results as they come), `verdict.py` (ordering, hints, dominance, the report).
"""

from __future__ import annotations

import time
import numpy as np

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.stages.ahead import Ahead, runs_ahead
from cp_debug.bisect.stages.placement import device_whole
from cp_debug.bisect.findings.contribution import judge_small_terms
from cp_debug.bisect.stages.fits import check_fits, subject_weights
from cp_debug.bisect.stages.lent import lend_reference, release_lent, start_lending
from cp_debug.bisect.findings.decisions import record_flips
from cp_debug.bisect.findings.intervention import confirmed
from cp_debug.bisect.ranking import beyond_locally, causes, first_divergent, root_cause
from cp_debug.bisect.stages.screen import screen_candidates
from cp_debug.bisect.stages.screen_ahead import ScreenAhead
from cp_debug.bisect.stages.refused import build_later_stage, refusal, refused_at
from cp_debug.bisect.look_inside import look_inside, within_confirmed
from cp_debug.bisect.phases import Phases
from cp_debug.bisect.result import BisectReport, CandidateResult
from cp_debug.bisect.run_state import BisectOptions, CandidateState, NullProgress, ProbeSpec, RunState
from cp_debug.bisect.stages.stage_lockstep import lockstep_stage, settle_run
from cp_debug.bisect.stages.stage_whole import candidate_stage, reference_stage
from cp_debug.bisect.stages.unprobed import deferred
from cp_debug.bisect.store import TensorStore, default_budget
from cp_debug.bisect.subjects.subject import LEVELS, Subject
from cp_debug.bisect.verdict import assemble_report, candidate_result, ordered
from cp_debug.compare.diff import NON_FINITE, Tolerance, default_tolerance
from cp_debug.errors import BadInputError

__all__ = ["BisectEngine", "BisectOptions"]


class BisectEngine:
    """One bisect run: orchestration (stages in order, reference then candidates) and the refinement loop. The
    shared state lives in `self.run_state` (run_state.py); the work is done by the parts that receive it."""

    def __init__(self, subject: Subject, reference: tuple[str, BackendSpec],
                 candidates: list[tuple[str, BackendSpec]], options: BisectOptions = BisectOptions(),
                 progress=None, phases: Phases | None = None):
        from cp_debug.determinism import Determinism

        ref_label, ref_spec = reference
        self.candidates = list(candidates)  # a SPEC@DIR's spec may take its files' precision (`_deployed`)
        self.opts = options
        level = options.level or subject.default_level
        if level not in LEVELS:
            raise BadInputError(f"unknown probe level {level!r}: use one of {', '.join(LEVELS)}")
        self.run_state = RunState(
            subject=subject, ref_label=ref_label, ref_spec=ref_spec, opts=options,
            det=Determinism(enabled=options.deterministic, seed=options.seed, conv_algo=options.cudnn_algo),
            level=level, progress=progress or NullProgress(), phases=phases or Phases(),
            store=TensorStore(default_budget() if options.memory_budget_mb is None else options.memory_budget_mb << 20))

    @property
    def subject(self) -> Subject:
        return self.run_state.subject

    # ---------------------------------------------------------------------------------------------------
    def run(self) -> BisectReport:
        from cp_debug.backends.factory import check_available

        rs = self.run_state
        everyone = [(rs.ref_label, rs.ref_spec)] + list(self.candidates)
        if rs.ref_spec.onnx_dir is not None:
            raise BadInputError(f"the reference {rs.ref_label} runs deployed files: the reference must be the model "
                                f"(torch) or cp_debug's export (ort), e.g. --backends torch,{rs.ref_label}")
        for _, spec in everyone:
            check_available(spec)
        weights, resident = subject_weights(rs.subject)
        check_fits(weights, [s for _, s in everyone], resident)  # a model too big for the machine: one line, now
        needs_onnx = any(s.runs_onnx for _, s in everyone)
        needs_module = any(s.is_torch for _, s in everyone)
        rs.warnings.extend(rs.subject.warnings)
        from cp_debug.export.cache import digests_kept  # the export's key and the trace's: the weights hashed once
        for st in rs.subject.stages:
            if not st.has_module and needs_module:
                raise BadInputError(f"stage {st.name!r} has no PyTorch module: use ONNX backends only "
                                    "(e.g. --backends ort,ort-cpu-fp16)")
            if needs_onnx:  # a graph given (--onnx, a deployed folder) is not exported: its probes are mapped
                what = f"exporting {st.name} to ONNX" if st.onnx_model is None else f"mapping the probes of {st.name}"
                with rs.progress.step(what), rs.phases.timed("export" if st.onnx_model is None else "probe map"), \
                        digests_kept(), st.keep_said():
                    st.onnx()
                    st.probe_map()
                if st.export_note:
                    rs.warnings.append(f"{st.name}: {st.export_note}")
                from cp_debug.export.torch_export import folded

                rs.warnings += [f"{st.name}: exporter warning: {text}" for text in folded(st.export_warnings)]
        first = self._level_probes()
        start_lending(rs, first, any(spec.can(Capability.RUN_SUBMODULE) for _, spec in self.candidates))
        self._deployed(first)
        if needs_onnx:
            self._check_node_lists()
        states = [self._new_state(label, spec) for label, spec in self.candidates]
        ref_up, cand_up = {}, {s.label: {} for s in states}
        # --generate on an --onnx file: the reference's decode on its probed session, before stage 0's feed
        lend_reference(rs, first, any(s.spec.can(Capability.RUN_SUBMODULE) for s in states))
        with ScreenAhead(rs) as screens:  # a stage's screen made while it runs, where the device has room
            for i, st in enumerate(rs.subject.stages):
                sp = [p for p in first if p.stage == i]
                self._feeds(i, states, ref_up, cand_up)
                screens.start(states, i)
                locked, classic = [s for s in states if s.lockstep], [s for s in states if not s.lockstep]
                ref_out = None
                if classic or not locked:
                    ref_out, outs = self._whole_stage(i, sp, classic, noise=self.opts.noise_floor)
                    for s in classic:
                        cand_up[s.label].update(outs[s.label])
                if locked:
                    with rs.phases.timed("lockstep (reference and candidates)"):
                        ls_ref, ls_out = lockstep_stage(rs, i, sp, locked)
                    ref_out = ref_out if ref_out is not None else ls_ref
                    for s in locked:
                        cand_up[s.label].update(ls_out[s.label])
                rs.ref_outputs[i] = {k: ref_out[k] for k in st.output_names}
                ref_up.update(rs.ref_outputs[i])
            self._detection_verdicts(states, cand_up)
            record_flips(rs, states, cand_up)  # the decisions the outputs carry (`findings/decisions.py`)
            release_lent(rs)  # where no stage took it
            with rs.phases.timed("screen"):
                screened = screen_candidates(rs, states, self._measure, screens)  # NaN/Inf the outputs hide
        with rs.phases.timed("graph as deployed"):
            deferred(rs, states)  # each graph as deployed, no probes, once no helper thread runs (`unprobed.py`)
        cands = []
        for s in states:
            with rs.phases.timed(f"{s.label}: findings"):
                cands.append(self._conclude(s, first + screened.get(s.label, [])))
        with rs.phases.timed("report"):
            report = assemble_report(rs, cands)
        report.scene = self._scene(states, cand_up)
        report.refusal = refusal(states)
        return report

    def _feeds(self, i: int, states: list[CandidateState], ref_up: dict, cand_up: dict[str, dict]) -> None:
        """Stage i's feed of the reference and of each candidate, from the outputs upstream of it (a refused
        candidate runs nothing more: `refused.py` builds its engines on the reference's feed); where the subject's
        glue makes a discrete decision (`Subject.decide`), the candidate's feed rests on the reference's decision
        and its own is kept as a finding."""
        rs = self.run_state
        rs.ref_feeds[i] = rs.subject.feed(i, ref_up)
        decide = rs.subject.decide if i > 0 else None
        for s in states:
            if s.refused is not None:
                continue
            if decide is None:
                s.feeds[i] = rs.subject.feed(i, cand_up[s.label])
                continue
            s.feeds[i], decision = decide(i, ref_up, cand_up[s.label])  # on the reference's choices
            if decision is not None:
                s.decisions.append(decision)

    def _whole_stage(self, i: int, sp: list[ProbeSpec], states: list[CandidateState], *, noise: bool,
                     timed: bool = True) -> tuple[dict, dict[str, dict]]:
        """The reference over stage i with `sp` exposed, then each of `states` on its own feed (`stage_whole.py`);
        those that can run ahead (`ahead.py`) start on helper threads while the reference runs. Returns the
        reference's stage outputs and each candidate's, by label. `timed`: each candidate's seconds (its own, and
        its helper's) added to its state's (a refinement is timed whole by `_conclude`)."""
        rs = self.run_state
        outs: dict[str, dict] = {}
        with Ahead(rs, i, sp) as ahead:
            for s in states:
                if runs_ahead(rs, s.spec):
                    ahead.start(s, s.feeds[i])
            with rs.phases.timed("reference"):
                ref_out = reference_stage(rs, i, sp, noise=noise, ran=ahead.reference_ran,
                                          capture=any(s.spec.can(Capability.RUN_SUBMODULE) for s in states))
            ahead.reference_done()
            for s in states:
                t0 = time.perf_counter()
                with rs.phases.timed(f"{s.label}: run"):
                    outs[s.label] = self._candidate(s, i, sp, ahead)
                if timed:
                    s.seconds += time.perf_counter() - t0 + ahead.seconds.get(s.label, 0.0)
        return ref_out, outs

    def _candidate(self, s: CandidateState, i: int, sp: list[ProbeSpec], ahead: Ahead) -> dict:
        """One candidate over stage i (`stage_whole.candidate_stage`); one whose library refuses to run its engine
        here has its later stages built, not run (`refused.py`)."""
        from cp_debug.backends.trt.trt_engine import EngineRefusedError

        rs = self.run_state
        if s.refused is not None:
            build_later_stage(rs, s, i, sp)
            return {}
        try:
            return candidate_stage(rs, s, i, sp, s.feeds[i], ahead=ahead)
        except EngineRefusedError as err:
            refused_at(s, rs.subject.stages[i].name, err)
            return {}

    def _scene(self, states: list[CandidateState], cand_up: dict[str, dict]):
        """The subject's scene with every side's last-stage outputs (the head maps, float32 copies), for the BEV
        pictures; None where the subject has no scene. A candidate that did not reach the end is left out."""
        from cp_debug.half import as_float32

        rs = self.run_state
        if rs.subject.scene is None:
            return None
        last = rs.subject.stages[-1].output_names
        ref = rs.ref_outputs[len(rs.subject.stages) - 1]
        cands = {s.label: {n: np.array(as_float32(np.asarray(cand_up[s.label][n]))) for n in last}
                 for s in states if all(n in cand_up[s.label] for n in last)}
        return rs.subject.scene.with_heads({n: np.array(as_float32(np.asarray(ref[n]))) for n in last}, cands)

    def _detection_verdicts(self, states: list[CandidateState], cand_up: dict[str, dict]) -> None:
        """The subject's detection verdict per candidate, on the last stage's outputs (a failure is a warning)."""
        rs = self.run_state
        judge = rs.subject.detection_verdict
        if judge is None:
            return
        last = rs.subject.stages[-1].output_names
        ref = rs.ref_outputs[len(rs.subject.stages) - 1]
        for s in (s for s in states if all(n in cand_up[s.label] for n in last)):
            out = cand_up[s.label]
            try:
                s.detections = judge(ref, {n: out[n] for n in last})
            except Exception as err:  # noqa: BLE001 - a verdict that cannot be made must not lose the run
                rs.warnings.append(f"{s.label}: detection verdict not made: {str(err).splitlines()[0][:160]}")

    def _deployed(self, probes: list[ProbeSpec]) -> None:
        """SPEC@DIR candidates: their stage views over the user's files, checked and mapped (`deployed.py`)."""
        from cp_debug.bisect.subjects.deployed import deployed_stages

        rs = self.run_state
        modules = [p for p in probes if p.kind == "module"]
        per_stage = {i: [p.name for p in modules if p.stage == i] for i in {p.stage for p in modules}}
        for k, (label, spec) in enumerate(self.candidates):
            if spec.onnx_dir is not None:  # its phase: "LABEL: deployed files" (the weights' rounding, the twins)
                with rs.progress.step(f"{label}: checking and mapping the deployed ONNX files"), \
                        rs.phases.timed(f"{label}: deployed files"):
                    found = deployed_stages(spec, self.subject, per_stage)
                rs.deployed[label] = found
                rs.warnings.extend(found.notes)
                for line in found.warned:  # what a converter changed silently: on stderr too, once
                    rs.progress.warn(line)
                if found.spec is not None:  # `ort@DIR` over FP16 files runs as the FP16 candidate it is
                    self.candidates[k] = (label, found.spec)

    def _check_node_lists(self) -> None:
        """--keep-fp32 / --exclude-int8 read back to the graphs' node names, once (`node_lists.py`)."""
        from cp_debug.bisect.node_lists import resolved

        self.opts = resolved(self.opts, list(self.subject.stages) + [
            st for found in self.run_state.deployed.values() for st in found.stages])
        self.run_state.opts = self.opts

    def close(self) -> None:
        """Drop the reference tensors (kept after run() for bundles); also done when the engine is collected."""
        from cp_debug.ort_sessions import let_go

        rs = self.run_state
        release_lent(rs)
        let_go()  # a file's session kept for its graph as deployed (`ort_sessions.hold`) that no stage took
        rs.store.close()
        rs.lockstep_runs.clear()
        rs.ref_cache.clear()

    # -- what a bug report asks of a finished run ------------------------------------------------------------
    def root_cause_segment(self, label: str, probe: str) -> tuple[int, dict[str, np.ndarray], str] | None:
        """For an ONNX-mapped probe: (stage index, reference boundary values, target tensor) of its segment."""
        from cp_debug.graph.segment import segment_inputs

        rs = self.run_state
        p = rs.probes.get(probe)
        if p is None or p.kind == "input" or label in rs.deployed:  # deployed files: no segment of our export
            return None
        st = rs.subject.stages[p.stage]
        pm = st.probe_map()
        tensor = probe if p.kind == "output" else (pm.tensors.get(probe) if pm else None)
        if tensor is None:
            return None
        if probe in rs.lockstep_runs:
            stage, ls = rs.lockstep_runs[probe]
            seg = ls.plan.segment_of(tensor)
            values = ls.reference_values(rs.ref_feeds[stage], list(seg.inputs) + [tensor])
            rs.ref_cache[probe] = values[tensor]
            return stage, {t: values[t] for t in seg.inputs}, tensor
        known = rs.known_tensors(p.stage)
        bnames = segment_inputs(st.onnx(), [tensor], set(known) - {tensor})
        feed = {b: np.asarray(rs.known_value(p.stage, known[b])) for b in bnames}
        return p.stage, feed, tensor

    def window_context(self, label: str, probe: str):
        """What a bug report needs to grow a window that ends at `probe` (see `window_context.py`), or None."""
        from cp_debug.bisect.cures.window_context import window_context

        if label in self.run_state.deployed:  # a window of our export would not be the user's graph
            return None
        return window_context(self.run_state, label, probe)

    def reference_value(self, probe: str) -> np.ndarray:
        rs = self.run_state
        if probe in rs.store:
            return np.asarray(rs.store.get(probe))
        if probe not in rs.ref_cache and probe in rs.lockstep_runs:
            stage, ls = rs.lockstep_runs[probe]
            p = rs.probes[probe]
            pm = rs.subject.stages[stage].probe_map()
            tensor = probe if p.kind == "output" else pm.tensors[probe]
            rs.ref_cache[probe] = ls.reference_values(rs.ref_feeds[stage], [tensor])[tensor]
        return np.asarray(rs.ref_cache[probe])

    def tolerance_for(self, label: str, probe: str) -> Tolerance:
        return self.run_state.tolerance(self.run_state.states[label], probe)

    # -- probes --------------------------------------------------------------------------------------------
    def _level_probes(self) -> list[ProbeSpec]:
        rs = self.run_state
        out: list[ProbeSpec] = []
        for i, st in enumerate(rs.subject.stages):
            for name in rs.subject.glued_inputs(i):
                out.append(ProbeSpec(name, i, "input", -1.0))
            tr = st.trace()
            chosen: list[str] = []
            end = 0.0
            if tr is not None:
                pos = {n: k for k, n in enumerate(tr.order)}
                chosen = st.probes_at(rs.level)
                for name in chosen:
                    out.append(ProbeSpec(name, i, "module", float(pos[name]), depth=0))
                end = float(len(tr.order))
            for k, name in enumerate(st.output_names):
                if st.output_aliases.get(name) not in chosen:  # else the module probe stands for it
                    out.append(ProbeSpec(name, i, "output", end + k))
        for p in out:
            rs.probes.setdefault(p.name, p)
        return out

    def _measure(self, i: int, probes: list[ProbeSpec], state: CandidateState) -> None:
        """`probes` of stage i measured for `state` (a refinement, a screen's path), as its stage runs."""
        if state.lockstep:
            lockstep_stage(self.run_state, i, probes, [state], refine=True)
        else:
            self._whole_stage(i, probes, [state], noise=False, timed=False)

    def _children(self, p: ProbeSpec, mapped_only: bool, label: str | None = None) -> list[ProbeSpec]:
        if p.kind != "module":
            return []
        st = self.run_state.stage_of(label, p.stage) if label is not None else self.subject.stages[p.stage]
        tr = st.trace()
        pos = {n: k for k, n in enumerate(tr.order)}
        kids = []
        for c in st.children(p.name):
            if mapped_only and c not in st.probe_map().tensors:
                # e.g. a conv whose BN was folded: look through to its own children, if any
                continue
            kids.append(ProbeSpec(c, p.stage, "module", float(pos[c]), parent=p.name, depth=p.depth + 1))
        return kids

    # -- candidates ------------------------------------------------------------------------------------------
    def _new_state(self, label: str, spec: BackendSpec) -> CandidateState:
        from cp_debug.bisect.stages.lockstep import lockstep_supported

        o = self.opts
        found = self.run_state.deployed.get(label)  # SPEC@DIR at fp32: the files' own precision sets the tolerance
        judged_at, unit = found.judged(spec) if found is not None else (spec.precision, None)
        tol = default_tolerance(judged_at)
        if o.atol is not None or o.rtol is not None:
            tol = Tolerance(o.atol if o.atol is not None else tol.atol, o.rtol if o.rtol is not None else tol.rtol,
                            tol.max_share)
        state = CandidateState(label, spec, tol, judged_at=judged_at, judged_unit=unit)
        qdq = spec.precision == "int8" and any(st.qdq_export is not None for st in self.subject.stages)
        # --int8 Q/DQ graphs run whole stages
        state.lockstep = o.lockstep and not qdq and spec.onnx_dir is None and lockstep_supported(
            self.run_state.ref_spec, spec, custom_calibration=bool(o.calib_feeds)) and not device_whole(
            self.run_state, spec)
        self.run_state.states[label] = state
        return state

    def _conclude(self, state: CandidateState, probes: list[ProbeSpec]) -> CandidateResult:
        """Rank, refine and explain one candidate's results (a refused one has none: its error instead)."""
        t0 = time.perf_counter()
        if state.refused is not None:
            return candidate_result(self.run_state, state, None, None, [], started=t0)
        settle_run(self.run_state, list(self.run_state.states.values()))  # local runs put off, where one is read
        judge_small_terms(self.run_state, state, list(state.results))
        results = ordered(state, probes)
        fd = first_divergent(results)
        rc = confirmed(self.run_state, state, causes(results, fd), results)  # proposed, confirmed at the outputs
        path: list[str] = [rc] if rc else []
        if self.opts.refine and self.opts.level is None:  # a layer a block's output hides (or one larger than
            inside = look_inside(self.run_state, state, results, self._measure, proposed=rc)  # an unconfirmed root)
            if inside is not None:
                rc, fd, path = inside
        if self.opts.refine and rc is not None:
            rc, fd = self._refine(state, rc, fd, path)
        return candidate_result(self.run_state, state, fd, rc, path, started=t0, measure=self._measure)

    # -- refinement ------------------------------------------------------------------------------------------
    def _refine(self, state: CandidateState, rc: str, fd: str | None, path: list[str]) -> tuple[str, str | None]:
        """Descend into the root cause's children (re-running its stage with them exposed) down to a leaf."""
        rs, mapped_only = self.run_state, state.spec.runs_onnx or self.run_state.ref_spec.runs_onnx
        for _ in range(self.opts.max_refine_depth):
            p = rs.probes[rc]
            kids = self._children(p, mapped_only, state.label)
            for k in kids:
                rs.probes.setdefault(k.name, k)
            kids = within_confirmed(rs, state, rc, kids)  # a confirmed root: the children holding what restored it
            if not kids:
                break
            self._measure(p.stage, kids, state)
            judge_small_terms(rs, state, [k.name for k in kids])
            sub = ordered(state, kids)
            sub_fd = first_divergent(sub)
            sub_rc = root_cause(sub, sub_fd) if sub_fd else None
            # Where `rc` makes NaN/Inf (its local value; its own where that is unknown, a torch candidate's tuple
            # output `self_attn[1]`), or its own segment is beyond precision, and no child's segment is: the op is
            # in `rc`'s own code (an attention's QK^T between its projections; a BERT's behind SDPA's IsNaN/Where
            # guard: off by 0.49, q, k, v within rounding), not in a child that reads it or rounds most.
            own = state.results.get(rc)
            made_here = own is not None and (own.local.status in NON_FINITE if own.local is not None
                                             else own.status in NON_FINITE)
            if (made_here and not any(r.local is not None and r.local.status in NON_FINITE for r in sub)) or (
                    beyond_locally(own) and not any(beyond_locally(r) for r in sub)):
                break
            if sub_rc is None:  # no child diverges on its own scale: the one adding the most error
                best = max((r for r in sub if r.local is not None), key=lambda r: r.local.rel_rmse, default=None)
                if best is None or best.local.rel_rmse <= 0:
                    break
                sub_rc = best.probe
            if fd == rc and sub_fd is not None:
                fd = sub_fd
            rc = sub_rc
            path.append(rc)
        return rc, fd

