"""Faults the network hides from the default level (issue 84, item 1): what a stage makes inside that its outputs do not
show.

A BERT whose layer-1 QK^T logits reach 1.7e5 overflows float16; softmax makes NaN; the exported SDPA's IsNaN/Where
guard turns those rows into zeros; the residual carries the block's output within tolerance — and the default level,
which measures the top modules only, read "within precision". `--level all` named the attention. The screen closes
that gap where it costs one run a side: after a float16 / bfloat16 ONNX Runtime candidate found nothing, its stage
graph runs once more with scalar outputs per float tensor, converted and run as the candidate runs it, and once in
FP32 (the reference's feed, ONNX Runtime on the candidate's device). A float32 tensor of static shape gives its error
sketch (`screen_sketch.py`: projections on fixed ±1 patterns and its sum of squares), which shows a NaN/Inf, all
zeros, and the relative error against FP32 (a branch float16 cancels, behind a residual that carries the block); any
other float tensor its `ReduceSum(t - t)` (NaN exactly where t holds a NaN or an infinity) and `ReduceSum(Abs(t))`. A
tensor non-finite or zero in FP32 too (an attention mask's -inf), a mask that only reaches softmaxes and comparisons
(`graph/masks.py`) or a stage output is no finding. For the first that remains, the modules on its path — its module
and every module above it, as `--level all` would measure them — are measured on the stage again, and the run's
verdict and refinement proceed on them: the same root cause as `--level all`.

Not screened: stages of an ONNX file (each of their tensors is a probe already), any stage at `--level all` (every
module is a probe there, so a finding's path has nothing left to measure: its one effect was a warning naming a tensor
inside a module's own code, with the verdict and root cause unchanged, for a second and a third run of the stage —
the CenterPoint demo's FP16 `--level all`: 5.2 s of 24 s), models past `SCREEN_UP_TO` bytes of
weights (the screen is a second session of the whole graph), on CUDA past `CUDA_SCREEN_UP_TO` (measured
on an H200: a 130m Llama's bisect 32 → 44-50 s, against issue 83's 1.5× of the floor) — the report's warnings say when
a screen was skipped for its size. Its cost on the CPU: 130m Llama 45.7 → 53.5 s (before the FP32 run of the
sketches); the sketches' FP32 run adds one inference of the stage and its sketches (the CenterPoint demo, 2 shared
cores: ~1.8 s on a ~14 s bisect; awml-base on an H100's CUDA provider 0.6 s, where on its host's CPU it took 8.1 s),
shared by the run's candidates on one device. Its FP32 sessions on the CPU (the twin, a float16 candidate's graph as
it runs) leave ONNX Runtime's graph rewrites out (`_rewrites_off`): 30 × 576 Llama's screen phase 4.2-4.9 → 2.7-2.9
CPU s, the same outputs bit for bit. The sketches do not ride on the candidate's own stage run: every float tensor
given one more reader, ONNX Runtime would fuse none of its nodes, and that run would no longer be the graph as it is
deployed (nor is the screen wanted until that run has found nothing). For a CUDA candidate the screen's runs start
as soon as the stage's feeds are known, beside the stage's own runs (`screen_ahead.py`), and are thrown away where
the stage diverged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.ranking import first_divergent
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState
from cp_debug.bisect.stages.screen_sketch import SKETCHES

SCREEN_UP_TO = 1 << 30
# on CUDA, where the candidate's own run is a few seconds, the screen's conversion and session cost more: a 130m
# Llama (520 MB) 32 → 44-50 s on an H200; the zoo's models (≤ 100 MB) a second or two
CUDA_SCREEN_UP_TO = 256 << 20
_SUFFIX = "::nonfinite"
_ZERO = "::abs_sum"  # ReduceSum(Abs(t)): 0 exactly where t is all zeros


@dataclass(frozen=True)
class Hidden:
    """The first tensor of a stage that the candidate makes NaN/Inf, collapses to all zeros, or gets wrong by a
    relative error far beyond its precision's (`screen_sketch.py`), and FP32 does not, the stage's outputs showing
    none of it."""

    stage: int
    tensor: str
    node: str
    op: str
    module: str | None
    kind: str = "nonfinite"  # or "zero", "error"
    rel: float | None = None  # "error": the estimated relative error, and the limit it passed
    limit: float | None = None

    def text(self, label: str) -> str:
        where = f"{self.module}: " if self.module else ""
        if self.kind == "zero":
            what = ("collapses to all zeros (FP32 is not zero there: its values lie below the format's smallest "
                    "subnormal)")
        elif self.kind == "error":
            what = (f"is off by a relative error of ~{self.rel:.2g} against FP32 (estimated from {SKETCHES} random "
                    f"projections of its error; beyond {self.limit:.2g}, ten times the precision's budget or half "
                    "the tensor), with no NaN/Inf and not all zeros,")
        else:
            what = "makes NaN/Inf (FP32 is finite there)"
        return (f"{label}: {where}{self.op} {self.node!r} {what} that the stage's outputs do not show (a guard or a "
                "residual downstream): the modules on its path are measured")


def screen_model(model, shapes: dict | None = None, like=None) -> tuple[object, list[str]]:
    """`model` with every float node output screened: with `shapes` (the graph inputs' concrete sizes), a float32
    tensor of static shape by its sketch (`screen_sketch.py`: projections that show its error, NaN/Inf and all
    zeros); any other by its flags (`_flags`: NaN/Inf where t holds a NaN or an infinity, 0 where t is all
    zeros). With the sketch's nodes, kept in FP32. `like`: a
    screened graph of the same stage whose tensors, sketched and flagged, are the ones screened here (the
    candidate's graph as it runs, its own intermediates not screened)."""
    from onnx import TensorProto, helper

    from cp_debug.bisect.stages.screen_sketch import add_sketches
    from cp_debug.graph.grouped import static_types
    from cp_debug.graph.onnx_files import copy_model
    from cp_debug.graph.plan import tensor_types

    types = tensor_types(model)
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    m = copy_model(model)
    sketches, flags = _screened(like) if like is not None else (None, None)
    sketched, keep = add_sketches(m, static_types(model, shapes), sketches) if shapes is not None else (set(), [])
    outputs = {o.name for o in m.graph.output}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for t in node.output:
            ty = types.get(t)
            if not t or ty is None or ty.tensor_type.elem_type not in floats or t in sketched or (
                    flags is not None and t not in flags):
                continue
            elem = ty.tensor_type.elem_type
            for out in _flags(m, t, elem):
                if out not in outputs:
                    m.graph.output.append(helper.make_tensor_value_info(out, elem, []))
    return m, keep


def _flags(m, t: str, elem: int) -> tuple[str, ...]:
    """Tensor `t`'s flags added to `m`: in float32 or float64 one `ReduceL1(t)` as `t::abs_sum` (not finite where t
    holds a NaN or an infinity — a sum of |t| past float32's range needs values beyond 1e30 —, 0 where it is all
    zeros: one pass over t, where `Sub` and `Abs` each wrote a tensor of its size, 2.9× the CenterPoint demo's voxel
    encoder's own run), kept in FP32 where a float16 candidate converts the screened graph (`_kept`: a float16 sum of
    |t| overflows — awml-base's voxel encoder on an H200 read "makes NaN/Inf"); in a 16-bit float already,
    `ReduceSum(t - t)` as `t::nonfinite` and `ReduceSum(Abs(t))` as `t::abs_sum`, read as == 0 only."""
    from onnx import TensorProto, helper

    zero = f"{t}{_ZERO}"
    if elem in (TensorProto.FLOAT, TensorProto.DOUBLE):
        m.graph.node.append(helper.make_node("ReduceL1", [t], [zero], name=zero, keepdims=0))
        return (zero,)
    diff, flag, size = f"{t}{_SUFFIX}_diff", f"{t}{_SUFFIX}", f"{t}{_ZERO}_abs"
    m.graph.node.extend([helper.make_node("Sub", [t, t], [diff], name=diff),
                         helper.make_node("ReduceSum", [diff], [flag], name=flag, keepdims=0),
                         helper.make_node("Abs", [t], [size], name=size),
                         helper.make_node("ReduceSum", [size], [zero], name=zero, keepdims=0)])
    return flag, zero


def _kept(model, keep) -> list[str]:
    """The nodes a candidate converting the screened `model` keeps in FP32: the sketch's (`keep`) and the float32
    flags' `ReduceL1`s (`_flags`)."""
    return [*keep, *(n.name for n in model.graph.node if n.op_type == "ReduceL1" and n.name.endswith(_ZERO))]


def _screened(model) -> tuple[set[str], set[str]]:
    """The tensors a screened graph sketches and those it flags, read from its outputs."""
    from cp_debug.bisect.stages.screen_sketch import sketch_outputs

    names = [o.name for o in model.graph.output]
    sketched = {n.rsplit("::", 1)[0] for n in sketch_outputs(model)}
    return sketched, {n[: -len(_ZERO)] for n in names if n.endswith(_ZERO)}


def _as_it_runs(run: RunState, state: CandidateState, i: int, st):
    """A CPU float16 candidate's stage graph as its runner computes it — converted, its float16 storage emulated in
    float32 (`precision/half_storage.py`) — for the screen to read, run as it is: the screen's thousands of nodes are
    then neither converted nor emulated again (issue 109: a 30-layer × 576 Llama's screened graph made ready and
    its session made, 12.9 s → 4.5 s alone on the busy CPU machine, its 2,841 outputs' sketches the same bit for bit;
    the bisect's screen 5.4-5.7 s → 4.8-4.9 s, the FP32 screen run beside it now the longer): each tensor's rounded
    float32 is what the sketch's FP32 nodes read of its float16 either way; the flags sum in float32 (a flag's sum of
    |t| no longer overflows float16: read as == 0 only, the same). The graph the candidate's runner ran, where its
    stage run held it (`hold_as_run`: its probes exposed, each a Cast to float32 of its rounded float16, the same
    values), else converted and emulated here as the runner does.
    None where the candidate is no such run (its screened graph is then converted as it runs it)."""
    from cp_debug.backends.graph_loader import PrepareGraph
    from cp_debug.precision.half_storage import emulate_half_storage

    held = state.as_run.pop(i, None)
    spec, model = state.spec, st.onnx()
    if held is not None or not _runs_emulated(spec, model):
        return held
    keep = tuple(run.ort_kwargs(spec, model).get("keep_fp32_nodes", ()))
    converted = PrepareGraph(model, str(spec), "fp16", keep_fp32_nodes=keep, check=False)()  # as its runner's
    emulated = emulate_half_storage(converted.model)
    return emulated.model if emulated.changed else None


def _runs_emulated(spec, model) -> bool:
    """Whether `spec` runs `model` converted to float16 here, its float16 storage emulated on the CPU."""
    from cp_debug.backends.ort.ort_runner import half_mode
    from cp_debug.precision.half_storage import holds_half_constants

    return spec.device == "cpu" and spec.precision == "fp16" and half_mode() != "native" and \
        not holds_half_constants(model)


def hold_as_run(run: RunState, state: CandidateState, i: int, runner) -> None:
    """The graph `runner` ran stage i on, held for the stage's screen (`_as_it_runs`) where it is screened and the
    runner emulated its conversion's float16 storage: one conversion and emulation of the stage, the runner's."""
    model = getattr(runner, "graph_as_run", None)
    if model is not None and runner.transform.half_storage is not None and screenable(run, state, i) and \
            _runs_emulated(state.spec, run.stage_of(state.label, i).onnx()):
        state.as_run[i] = model


def _screen_run(run: RunState, spec, model, feed: dict, keep=()) -> tuple[set[str], set[str], dict]:
    """The tensors `spec` makes non-finite on `feed` (screen outputs that came out NaN), those it makes all zeros (an
    absolute sum of 0), and the sketches as they came; `keep`: the sketch's nodes, kept in FP32."""
    from cp_debug.bisect.stages.screen_sketch import broken, sketch_outputs
    from cp_debug.bisect.findings.segment_why import run_segment

    flags = [o.name for o in model.graph.output if o.name.endswith((_SUFFIX, _ZERO))] + sketch_outputs(model)
    out = run_segment(run, str(spec), model, feed, flags, spec=spec, keep=keep, facts=False, prepack=False,
                      det=_rewrites_off(run, spec)).values
    nonfinite, zeros = broken(out)
    nonfinite |= {k.rsplit("::", 1)[0] for k, v in out.items() if k.endswith((_SUFFIX, _ZERO)) and not (
        k.endswith(_ZERO) and v.dtype.itemsize < 4) and not np.isfinite(v).all()}
    return nonfinite, zeros | {k[: -len(_ZERO)] for k, v in out.items() if k.endswith(_ZERO) and np.all(v == 0)}, out


# ONNX Runtime's graph rewrites at its basic and extended levels, by its own names (a name this ONNX Runtime lacks is
# no error): folding, eliminations, fusions; its layout (NCHWc convolutions, level 3) is kept
_REWRITES = ("ConstantFolding", "CommonSubexpressionElimination", "ConstantSharing", "Level1_RuleBasedTransformer",
             "MatMulAddFusion", "ReshapeFusion", "GemmActivationFusion", "ConvActivationFusion", "GeluFusion",
             "LayerNormFusion", "SimplifiedLayerNormFusion", "AttentionFusion", "EmbedLayerNormFusion",
             "GatherSliceToSplitFusion", "GatherToSplitFusion", "MatmulTransposeFusion", "BiasGeluFusion",
             "SkipLayerNormFusion", "FastGeluFusion", "QuickGeluFusion", "MatMulScaleFusion", "MatMulActivationFusion",
             "BiasSoftmaxFusion", "Level2_RuleBasedTransformer")


def _rewrites_off(run: RunState, spec):
    """The run's determinism with ONNX Runtime's graph rewrites (`_REWRITES`) left out where `spec` runs a screened
    graph as it is written — FP32 on the CPU: the FP32 twin, and a CPU float16 candidate's graph as it runs
    (converted and emulated already) —, else None (the run's own). Nothing there is left for them to do: every float
    tensor of a screened graph has its sketch or flag as one more reader, which no fusion takes, and a graph run once
    gains nothing from folding. They cost the session: 30 × 576 Llama's stage (8.9 k and 12.4 k nodes) made in
    1.0-1.6 CPU s each at ORT's default level against 0.4-0.6 without them (0.3-0.6 with no optimiser at all, whose
    convolutions then ran 20 % slower: the CenterPoint demo's backbone); its 2,839 and 2,775 screen outputs the same
    bit for bit."""
    from dataclasses import replace

    if spec.device != "cpu" or spec.precision != "fp32":
        return None
    return replace(run.det, ort_disabled_optimizers=tuple(dict.fromkeys([*run.det.ort_disabled_optimizers,
                                                                         *_REWRITES])))


@dataclass
class ScreenRuns:
    """A stage's screen run for one candidate: the screened graph, the sketch's nodes kept in FP32, what the
    candidate's run made non-finite and all zeros and its sketches (`_screen_run`), and FP32's run on the reference's
    feed (None where it was not wanted: no sketch, no flag)."""

    model: object
    keep: list
    ours: tuple
    fp32: tuple | None
    key: tuple


def _eligible(run: RunState, state: CandidateState, i: int) -> bool:
    """An ONNX Runtime float16 / bfloat16 candidate running cp_debug's export of a module at stage i, below `--level
    all` (every module a probe there: nothing left on a finding's path to measure)."""
    spec = state.spec
    if not spec.can(Capability.ORT_SESSIONS) or spec.precision not in ("fp16", "bf16"):
        return False
    return state.refused is None and run.stage_of(state.label, i).has_module and spec.onnx_dir is None and \
        run.level != "all"


def _size_limit(spec) -> int:
    return SCREEN_UP_TO if spec.device == "cpu" else CUDA_SCREEN_UP_TO


def screenable(run: RunState, state: CandidateState, i: int) -> bool:
    """Whether stage i of `state` is screened once its own run found nothing: `_eligible`, its weights within the
    screen's size for its device (where they are not, `hidden_fault` says so)."""
    from cp_debug.bisect.stages.fits import subject_weights

    return _eligible(run, state, i) and subject_weights(run.subject)[0] <= _size_limit(state.spec)


def wants_screen(run: RunState, state: CandidateState, i: int) -> bool:
    """Whether stage i of `state` is screened (see the module docstring): `screenable`, and its run found nothing
    (a divergence tells its own story)."""
    return screenable(run, state, i) and first_divergent(list(state.results.values())) is None


def screen_runs(run: RunState, state: CandidateState, i: int, fp32: dict) -> ScreenRuns:
    """Stage i's screened graph run as `state` runs it, on its feed, and where it is sketched (FP32's run then wanted
    whatever the candidate's shows) once in FP32 on the reference's feed beside it, on the candidate's device (an
    awml-base FP32 screen took 8.1 s on an H100 host's CPU, 0.6 s on its CUDA provider). `fp32`: the FP32 runs made
    so far, shared by the candidates of one device (the reference's feed is theirs too). Called on the engine's
    thread, or ahead on `screen_ahead.ScreenAhead`'s."""
    from cp_debug.bisect.stages.stand_in import plain_spec
    from cp_debug.graph.grouped import shapes_of

    st = run.stage_of(state.label, i)
    shapes = shapes_of(state.feeds[i])  # sketched where both runs take one graph of concrete sizes
    concrete = shapes if shapes == shapes_of(run.ref_feeds[i]) else None
    model, keep = screen_model(st.onnx(), concrete)
    key = (i, id(st.onnx()), bool(keep), state.spec.device)
    fp32_spec = plain_spec(state.spec.device)
    with ThreadPoolExecutor(1, thread_name_prefix="cpdebug-screen-fp32") as pool:
        beside = pool.submit(_screen_run, run, fp32_spec, model, run.ref_feeds[i]) if keep and key not in fp32 \
            else None
        as_run = _as_it_runs(run, state, i, st)
        if as_run is None:
            ours = _screen_run(run, state.spec, model, state.feeds[i], _kept(model, keep))
        else:  # the candidate's own graph screened, run as it is
            ours = _screen_run(run, fp32_spec, screen_model(as_run, concrete, like=model)[0], state.feeds[i])
        if beside is not None:
            fp32[key] = beside.result()
    return ScreenRuns(model, keep, ours, fp32.get(key), key)


def hidden_fault(run: RunState, state: CandidateState, i: int, fp32: dict | None = None, ahead=None
                 ) -> Hidden | None:
    """Stage i's first hidden fault for `state` (None where there is none or the stage is not screened); `fp32`: the
    FP32 screen runs of the run's candidates so far (on the reference's feed: the same for each candidate);
    `ahead`: the screen's runs made ahead (`screen_ahead.ScreenAhead`), where it made this stage's."""
    from cp_debug.bisect.findings.op_findings import NamedStage, named_module
    from cp_debug.bisect.stages.screen_sketch import hidden_rel, rel_errors

    if not _eligible(run, state, i) or first_divergent(list(state.results.values())) is not None:
        return None  # not screened, or a divergence tells its own story
    if not screenable(run, state, i):  # past the screen's size for its device: said
        limit = _size_limit(state.spec)
        run.warnings.append(f"{state.label}: no screen for faults the outputs hide (NaN/Inf, zeros, large errors: "
                            f"a second run of the graph past {limit >> 20} MiB of weights on {state.spec.device}): "
                            "--level all measures every module")
        return None
    st = run.stage_of(state.label, i)
    made = ahead.runs(state, i) if ahead is not None else None
    fp32 = fp32 if fp32 is not None else {}
    if made is None:  # not made ahead: its conversion, sessions and runs here (on a CPU, a long step)
        with run.progress.step(f"{state.label}: screening {st.name} for faults its outputs hide"):
            made = screen_runs(run, state, i, fp32)
    broken, zeros, sketches = made.ours
    # masks first (a causal or padding mask's -inf: most models' only flags), then FP32's own, where any remain
    skip = run.mask_tensors(st) | set(st.output_names)  # a broken output is measured, and said
    ours, ours_zero, wrong, rel = broken - skip, zeros - skip, set(), {}
    if ours or ours_zero or made.keep:
        from cp_debug.bisect.stages.stand_in import plain_spec

        if made.fp32 is None:  # no sketch: FP32's flags, wanted now that the candidate's show some
            spec = plain_spec(state.spec.device)
            made.fp32 = fp32[made.key] if made.key in fp32 else _screen_run(run, spec, made.model, run.ref_feeds[i])
            fp32[made.key] = made.fp32
        fp32_broken, fp32_zeros, fp32_sketches = made.fp32
        ours, ours_zero = ours - fp32_broken, ours_zero - fp32_zeros
        rel = rel_errors(sketches, fp32_sketches)
        wrong = {t for t, (r, _) in rel.items() if r > hidden_rel(state.judged_at)} - skip - fp32_broken
    found = ours | ours_zero | wrong
    if not found:
        return None
    node = next(n for n in st.onnx().graph.node if set(n.output) & found)
    tensor = next(t for t in node.output if t in found)
    kind = "nonfinite" if tensor in ours else "zero" if tensor in ours_zero else "error"
    return Hidden(i, tensor, node.name, node.op_type, named_module(node, NamedStage.of(st)), kind,
                  rel[tensor][0] if kind == "error" else None, hidden_rel(state.judged_at) if kind == "error" else None)


def path_probes(run: RunState, state: CandidateState, hidden: Hidden) -> list[ProbeSpec]:
    """The probes `--level all` has on the hidden fault's path: its module and every module above it (a module's
    tuple outputs `m[0]` included), not measured yet."""
    if not hidden.module:
        return []
    st = run.stage_of(state.label, hidden.stage)
    parts = hidden.module.split(".")
    above = {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    tr = st.trace()
    pos = {n: k for k, n in enumerate(tr.order)} if tr is not None else {}
    out = []
    for name in st.probes_at("all"):
        base = name.split("[", 1)[0]
        if base in above and name not in state.results and name in pos:
            out.append(ProbeSpec(name, hidden.stage, "module", float(pos[name]), depth=0))
    return out


def screen_candidates(run: RunState, states: list[CandidateState], measure, ahead=None
                      ) -> dict[str, list[ProbeSpec]]:
    """Each candidate's stages screened in turn; at its first hidden fault the path's probes are measured
    (`measure(i, probes, state)`: the engine re-runs stage i for `state` with them) and said in the warnings.
    `ahead`: the runs made ahead (`screen_ahead.ScreenAhead`). Returns the probes added, by candidate label, for its
    verdict."""
    added: dict[str, list[ProbeSpec]] = {}
    fp32: dict = {}
    for s in states:
        for i in range(len(run.subject.stages)):
            found = hidden_fault(run, s, i, fp32, ahead)
            if found is None:
                continue
            run.warnings.append(found.text(s.label))
            probes = path_probes(run, s, found)
            for p in probes:
                run.probes.setdefault(p.name, p)
            if probes:
                measure(i, probes, s)
                added[s.label] = probes
            break
        s.as_run.clear()  # held for stages not screened (one diverged)
    return added
