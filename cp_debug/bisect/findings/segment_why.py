"""Why the root cause's segment diverges in FP16, op by op, from the data: the segment (cut from the reference's
known tensors to the root cause's tensor) runs once in FP32 and once as the candidate runs it, every tensor inside
exposed. The finding names the first op whose FP32 value leaves float16's range (|x| > 65504), else the first op
where the candidate makes NaN/Inf while the reference is finite, with its module and the number it rests on. The
advice, keeping in FP32 every op that writes or reads a value beyond the range, is then tried on the same segment
and said to cure it only when it does ("verified"), else the keep-fp32 search is proposed.

A probe sees module outputs only: an attention whose QK^T logits overflow shows up at the attention's output (or,
before attention probes, at the next LayerNorm), and the segment's last op is not the one that overflowed. Where the
value leaving the segment is itself beyond the range (a conv whose ReLU and next conv are later probes), the nodes
reading it are outside the segment: the segment is taken on to the first later probe of the stage whose reference
value is back within the range, and the advice is verified there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.op_findings import (NamedStage, OpFinding, find_cancellation, find_collapse,
    find_long_reduction,
                                         find_nonfinite, find_overflow)
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare.diff import TensorDiff
from cp_debug.half import FP16_MAX
from cp_debug.sites import module_of_probe

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.cures.restore import AtOutputs


@dataclass(frozen=True)
class SegmentWhy:
    finding: OpFinding
    keep: tuple[str, ...]  # the nodes advised to keep in FP32
    verified: bool | None  # None: not tried
    cured_rel_rmse: float | None = None
    note: str | None = None
    lane: str | None = None  # where the segment ran when not as the candidate runs it (a torch candidate)
    through: str | None = None  # the later probe the segment was taken on to (its own output out of range)
    # the verified keep set run at the outputs too (`restore.keep_at_outputs`, `advice.keep_held`): not back there,
    # it is no cure
    at_outputs: AtOutputs | None = field(default=None, compare=False)

    def text(self) -> str:
        f = self.finding
        if f.kind == "overflow":
            why = (f"FP16 overflow at {f.describe()}: its FP32 value reaches |x| = {f.value:.3g} > {FP16_MAX:g}, "
                   "beyond the FP16 range" + f.sum_text())
        elif f.kind == "zero":
            why = (f"FP16 output collapsed to zero at {f.describe()}: the candidate gives 0 everywhere where the "
                   f"FP32 reference reaches |x| = {f.value:.3g}, with no NaN/Inf (as ONNX Runtime's float16 "
                   "LayerNormalization has, onnxruntime#29034)")
        elif f.kind == "cancel":
            step = 2.0 ** (np.floor(np.log2(f.value)) - 10)
            why = (f"FP16 cancellation at {f.describe()}: its inputs reach |x| = {f.value:.3g}, where float16's "
                   f"step is {step:.3g}, while its FP32 result is {f.result_rms:.3g} (RMS): the inputs' rounding is "
                   f"the result's size, off by rel. RMSE {f.rel_rmse:.3g} against FP32 — subtract before the large "
                   "terms are added, or keep the ops that make them in FP32")
        elif f.kind == "reduction":
            why = (f"FP16 reduction over {int(f.value)} elements at {f.describe()} (> 2^15): its float16 result is off "
                   f"by rel. RMSE {f.rel_rmse:.3g} against FP32, beyond one float16 rounding (2^-11); over that many "
                   "elements a softmax's weights (~1/n) sink toward float16's subnormals and a float16 accumulator's "
                   "sum outgrows its 11-bit mantissa (autoware-ml#95)")
        else:
            near = ""
            if f.ref_absmax is not None and f.ref_absmax > FP16_MAX / 2:
                near = (f"; its FP32 value |x| = {f.ref_absmax:.5g} lies within the FP16 range, "
                        f"{FP16_MAX - f.ref_absmax:.3g} below 65504: rounding its float16 inputs takes it past")
            why = (f"FP16 NaN/Inf first made at {f.describe()}: {int(f.value)} non-finite element(s) where the "
                   f"FP32 reference is finite, and no FP32 value in the segment leaves float16's range{near}"
                   + f.sum_text())
        keep = ", ".join(self.keep)
        seg = "this segment"
        if self.through:
            why += (f"; the value it hands on is out of range too, so the segment is taken on to {self.through}, "
                    "the first later probe back within the range")
            seg = f"the segment through {self.through}"
        on = (f" on {self.lane} running the exported segment (torch has no per-node FP32 switch: keep the module "
              "out of half / autocast)") if self.lane else ""
        held = self.at_outputs
        if self.verified and held is not None and not held.back:  # said with the outputs' number, its flag dropped
            advice = (f"keeping {keep} in FP32 brings {seg} within precision{on} (local rel. RMSE "
                      f"{self.cured_rel_rmse:.3g}), not the outputs ({held.figures()}): not the cure")
        elif self.verified:
            advice = (f"verified{on}: keeping {keep} in FP32 (--keep-fp32) brings {seg} within precision "
                      f"(local rel. RMSE {self.cured_rel_rmse:.3g})")
        elif self.verified is False:
            advice = (f"keeping {keep} in FP32 does not cure {seg} ({self.note}); `cpdebug keep-fp32` "
                      "searches the smallest set that does")
        else:
            advice = f"keep {keep} in FP32 (--keep-fp32); not verified here ({self.note})"
        return f"{why}; {advice}"


@dataclass(frozen=True)
class RootSegment:
    """The root cause's segment: cut from the reference's known tensors to the probe's `tensor`, fed the reference's
    values there (`feed`), with the stage whose probe map names its nodes (`named`) and the spec that runs it."""

    model: Any  # onnx.ModelProto
    feed: dict
    tensor: str
    spec: Any  # BackendSpec: the candidate's, or ONNX Runtime's standing in for a trt-*@KIT (stand_in.py)
    named: Any  # NamedStage


def root_segment(run: RunState, state: CandidateState, i: int, probe: str, through: str | None = None,
                 whole: bool = False) -> RootSegment | None:
    """`probe`'s segment as its local error ran it (local_error.py), or None where it has no tensor or value; with
    `through` (a later probe of the same stage), the segment from the same known tensors on to that probe's tensor,
    the probes between computed inside it; `whole`: the probe's own children (a refinement measured them after its
    local error) computed inside it too, as its local error ran it before them."""
    from cp_debug.bisect.stages.stand_in import local_spec
    from cp_debug.graph.plan import cut_segment, segment_model, tensor_types

    spec, _ = local_spec(state)  # trt-*@KIT: ONNX Runtime on the same segment, as its local errors
    st = run.stage_of(state.label, i)
    pm = st.probe_map()
    end = through or probe
    tensor = pm.tensors.get(end) if pm is not None else None
    model = st.onnx()
    q = run.probes.get(end)
    if tensor is None and q is not None and q.kind == "output":  # a stage output is its own tensor
        tensor = end
    if tensor is None:
        return None
    inside = {pm.tensors[p] for p in _probes_from(run, i, probe, end) if p in pm.tensors}
    if whole:
        base = probe.split("[", 1)[0].split("#", 1)[0] + "."
        inside |= {pm.tensors[n] for n, q in run.probes.items() if q.stage == i and n.startswith(base)
                   and n in pm.tensors} - {tensor}
    if probe in run.lockstep_runs and pm.tensors.get(probe):  # the reference's values were never all held
        _, ls = run.lockstep_runs[probe]
        first = ls.plan.segment_of(pm.tensors[probe])
        cut = cut_segment(model, [tensor], set(first.inputs if first else ()) - inside - {tensor})
        values = ls.reference_values(run.ref_feeds[i], [*cut.inputs, tensor])
        if end not in run.store:
            run.store.put(end, values[tensor])
        feed = {b: np.asarray(values[b]) for b in cut.inputs}
    elif end in run.store:
        known = run.known_tensors(i, st)
        cut = cut_segment(model, [tensor], set(known) - inside - {tensor})
        feed = {b: np.asarray(run.known_value(i, known[b])) for b in cut.inputs}
    else:
        return None
    seg = segment_model(model, cut, feed, tensor_types(model),
                        {init.name: init for init in model.graph.initializer}, {tensor: run.store.shape(end)})
    return RootSegment(seg, feed, tensor, spec, NamedStage.of(st))


def reference_in_store(run: RunState, i: int, names: list[str]) -> None:
    """Put the reference's values of stage i's probes `names` in the store where a lockstep run measured them
    segment by segment without keeping them (one reference run up to the last of them)."""
    pm = run.subject.stages[i].probe_map()
    missing = [n for n in names if n not in run.store and n in run.lockstep_runs and pm and n in pm.tensors]
    if not missing:
        return
    _, ls = run.lockstep_runs[missing[0]]
    values = ls.reference_values(run.ref_feeds[i], [pm.tensors[n] for n in missing])
    for n in missing:
        run.store.put(n, np.asarray(values[pm.tensors[n]]))


def _probes_from(run: RunState, i: int, first: str, last: str) -> list[str]:
    """Stage i's module probes from `first` to `last` in execution order, both included."""
    lo, hi = run.probes[first].pos, run.probes[last].pos
    return [n for n, p in run.probes.items() if p.stage == i and p.kind == "module" and lo <= p.pos <= hi]


_THROUGH_PROBES = 8  # how many later probes are tried for one whose value is back within float16's range


def _back_in_range(run: RunState, state: CandidateState, i: int, probe: str) -> str | None:
    """Where `probe`'s reference value leaves float16's range: the first later module probe of stage i with a tensor
    in the graph whose value is back within it (None if the probe's value is in range, or none of the next few is)."""
    if probe not in run.probes:
        return None
    pm = run.stage_of(state.label, i).probe_map()
    pos = run.probes[probe].pos
    later = sorted((p.pos, n) for n, p in run.probes.items() if p.stage == i and p.kind == "module" and p.pos > pos
                   and (n in run.store or n in run.lockstep_runs) and pm is not None and n in pm.tensors)
    reference_in_store(run, i, [probe] + [n for _, n in later[:_THROUGH_PROBES]])
    if probe not in run.store or _absmax(run, probe) <= FP16_MAX:
        return None
    for _, name in later[:_THROUGH_PROBES]:
        if _absmax(run, name) <= FP16_MAX:
            return name
    return None


def _absmax(run: RunState, name: str) -> float:
    v = np.asarray(run.store.get(name))
    if not v.size or not np.issubdtype(v.dtype, np.floating):
        return 0.0
    finite = v[np.isfinite(v)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def explain_segment(run: RunState, state: CandidateState, i: int, probe: str) -> SegmentWhy | None:
    """The op-level why of `probe`'s segment for an FP16 candidate, or None where it does not apply or the data shows
    nothing (no value out of range, no NaN/Inf). A torch candidate (torch-cuda-fp16) is explained on the stage's
    exported segment: the FP32 values that leave float16's range are the reference's, whoever runs FP16; NaN/Inf
    and the cure are found with ONNX Runtime's float16 storage (ort-cpu-fp16), and the report says so."""
    from cp_debug.bisect.stages.stand_in import explaining_spec

    spec, lane = explaining_spec(state)  # a torch candidate: ONNX Runtime's float16 storage on the CPU
    if spec.precision != "fp16" or not spec.can(Capability.ORT_SESSIONS):
        return None
    probe = _stand_in(run, state, i, probe) or probe
    through = _back_in_range(run, state, i, probe)
    rs = root_segment(run, state, i, probe, through) if through else None
    if rs is None:
        through, rs = None, root_segment(run, state, i, probe)
    if rs is None:
        return None
    seg, feed, tensor, st = rs.model, rs.feed, rs.tensor, rs.named
    judged = through or probe
    inner = _float_outputs(seg)
    wide = _fp32_twin(seg)  # a user's FP16 file: its FP32 values, and the advice tried, on its float32 twin
    ref = run_segment(run, "ort", wide, feed, inner).values
    masks = run.mask_tensors(run.stage_of(state.label, i))
    ref = {**feed, **ref}  # a summing op's terms may be the segment's own inputs
    finding, keep = find_overflow(seg, ref, st, masks)
    if finding is None:
        cand = run_segment(run, str(spec), seg, feed, inner, spec=spec).values
        finding = (find_nonfinite(seg, ref, cand, st, masks) or find_collapse(seg, ref, cand, st)
                   or find_cancellation(seg, ref, cand, st) or find_long_reduction(seg, ref, cand, st))
        if finding is None:
            return None
        keep = (finding.node,)
    first = None
    for tried in _widening(seg, keep):
        try:
            got = run_segment(run, str(spec), wide, feed, [tensor], spec=spec, keep=tried).values[tensor]
        except Exception as err:  # noqa: BLE001 - a segment ONNX Runtime refuses to run with the nodes kept
            return SegmentWhy(finding, keep, None, note=f"the segment did not run with them kept: {err}",
                              through=through, lane=lane)
        d = TensorDiff.from_arrays(judged, run.store.get(judged), got, run.tolerance(state, judged))
        if _cured(run, state, judged, d):
            return SegmentWhy(finding, tried, True, d.rel_rmse, through=through, lane=lane)
        first = first or f"status {d.status}, local rel. RMSE {d.rel_rmse:.3g}"
    return SegmentWhy(finding, keep, False, note=first, through=through, lane=lane)


def _fp32_twin(seg):
    """`seg` itself, or where it holds float16 (a segment of a user's FP16 file, run as it is) its float32 twin
    (`half_storage.widen_half`): run plain it gives the FP32 values (a Conv's 9.5e4 stays 9.5e4, not inf), and
    converted with nodes kept in FP32 it is cp_debug's own FP16 conversion of the same nodes."""
    from cp_debug.precision.half_storage import holds_half_constants, widen_half

    return widen_half(seg) if holds_half_constants(seg) else seg


def _stand_in(run: RunState, state: CandidateState, i: int, probe: str) -> str | None:
    """For a probe with no tensor in the graph (a module's second output the exporter does not keep apart, say an
    attention's weights `self_attn[1]`), the last probe of that module's own — a child, another output — that has
    one and a reference value: its segment holds the module's code up to there. None where the probe has a tensor."""
    pm = run.stage_of(state.label, i).probe_map()
    if pm is None or pm.tensors.get(probe):
        return None
    base = module_of_probe(probe)
    own = [(p.pos, n) for n, p in run.probes.items() if p.stage == i and p.kind == "module" and n != probe
           and n.startswith((base + ".", base + "[")) and pm.tensors.get(n) and n in run.store]
    return max(own)[1] if own else None


def _cured(run: RunState, state: CandidateState, name: str, d: TensorDiff) -> bool:
    """The segment with the advice applied passes by the rule the run judged every probe with: the tolerance in
    fixed mode, the candidate's precision budget under the noise model (one judge: "verified" never means less, nor
    "does not cure" more, than the verdict a bisect with the set kept would give — issue 84's 'does not cure' at
    1/68 of FP16's budget was the element-wise tolerance the model-mode verdict does not judge by)."""
    if run.opts.tolerance_mode != "model":
        return d.status == "ok"
    from cp_debug.compare.noise import status_of  # the word record.judged gives a probe: not element-wise

    return status_of(d, run.judge(state, name, d)) == "ok"


_WIDEN_STEPS = 6  # how far upstream the kept set grows before the keep-fp32 search is proposed instead


def _widening(seg, keep: tuple[str, ...]):
    """The kept set, then grown one step upstream at a time (the ops computing its inputs: huge logits are only as
    exact as the float16 q and k they come from), within the segment."""
    producer = {t: n for n in seg.graph.node for t in n.output if t}
    by_name = {n.name: n for n in seg.graph.node}
    kept = list(keep)
    yield tuple(kept)
    for _ in range(_WIDEN_STEPS):
        grown = [producer[t].name for k in kept for t in by_name[k].input
                 if t in producer and producer[t].op_type != "Constant"]
        new = [n for n in dict.fromkeys(grown) if n not in kept]
        if not new:
            return
        kept = new + kept
        yield tuple(kept)


def _float_outputs(model) -> list[str]:
    from cp_debug.graph.plan import tensor_types

    types = tensor_types(model)
    floats = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
    return [t for n in model.graph.node if n.op_type != "Constant" for t in n.output
            if t and (types[t].tensor_type.elem_type if t in types else 1) in floats]


def unpacked_once(spec) -> bool:
    """Whether a session of `spec` run once is made without prepacking its weights (`OrtRunner`'s `prepack`): ONNX
    Runtime's float kernels on the CPU (136 M Llama: made in 0.08 against 0.5 CPU s, run in 0.14 against 0.10);
    quantized kernels (INT8, FP8, a user's deployed file) keep their packing, as the candidate's run has it."""
    return spec.device == "cpu" and spec.precision in ("fp32", "fp16", "bf16") and spec.onnx_dir is None


@dataclass(frozen=True)
class SegmentRun:
    values: dict  # output tensor -> value
    amax: dict  # INT8: the calibrated amax of each tensor the runner quantized; {} otherwise
    # INT8: Clip → (its QuantizeLinear's low bound, its minimum) where ONNX Runtime's ClipQuantFusion drops it wrongly
    clips: dict = field(default_factory=dict)
    qdq: Any = None  # INT8 quantized here: the segment's Q/DQ graph as the runner quantized it (no probes exposed)


def run_segment(run: RunState, label: str, model, feed: dict, outputs: list[str], *, spec=None, keep=(),
                exclude=(), facts: bool = True, det=None, qdq=None, prepack: bool = True) -> SegmentRun:
    """`model` (a segment) run as `label`/`spec` runs it, `outputs` exposed: with `keep` kept in FP32 (FP16) or
    `exclude` left out of INT8 on top of the run's own lists; INT8 is calibrated on `feed`, as local errors are.
    `facts=False`: ONNX Runtime's optimised graph is not written and read back for precision facts no one reads.
    `det`: the run's determinism settings with a change (ONNX Runtime optimisers left out: `clip_fusion.py`);
    `qdq` (INT8): a Q/DQ graph of the segment run as it is (a range changed: `int8_range_rung.py`). `prepack=False`:
    on the CPU, a float graph's weights not copied into the kernels' layout for its one run (`OrtRunner`'s `prepack`;
    the screen's two sessions of a whole LLM), its values within its precision's rounding of a prepacked run's."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.precision.int8 import clip_drops

    spec = spec or BackendSpec.parse(label)
    # a segment cut or derived by cp_debug from a graph the run loaded (checked there), not checked again: the
    # checker encodes the whole graph (a screen's, thousands of outputs) and asks shapes of outputs ONNX Runtime
    # runs without (a probe the runner exposed)
    kw = {"determinism": det or run.det, "spinning": False, "check_model": False, **run.ort_kwargs(spec, model)}
    if not facts:
        kw["graph_facts"] = False
    if not prepack and unpacked_once(spec):
        kw["prepack"] = False
    if keep:
        kw["keep_fp32_nodes"] = list(dict.fromkeys([*kw.get("keep_fp32_nodes", ()), *keep]))
    if spec.calibrated:  # INT8, FP8, NVFP4: calibrated on the segment's own feed, as local errors are
        kw["calib_feeds"] = [feed]
    if qdq is not None:
        kw["int8_model"] = qdq
    if exclude:  # out of the run's quantisation, on top of its own list
        kw["exclude_int8_nodes"] = list(dict.fromkeys([*kw.get("exclude_int8_nodes", ()), *exclude]))
    declared = {o.name for o in model.graph.output}
    extra = [t for t in outputs if t not in declared]
    with make_runner(spec, onnx_model=model, extra_outputs=extra, **kw) as r:
        out = r.infer(feed)
        amax = r.quant_amax()
        q = getattr(r, "quantized", None) if spec.precision == "int8" else None
    clips = clip_drops(q.model) if q is not None else {}
    return SegmentRun({t: np.asarray(out[t]) for t in outputs if t in out}, amax, clips,
                      q.model if q is not None else None)


