"""Local error: each probe's segment run alone on the reference's boundary values.

For torch the segment is the probe's submodule, fed the reference's captured inputs; for ONNX backends it is
the subgraph cut from the nearest known reference tensors to the probe's tensor. A probe's local error says
what its own segment adds, apart from the error flowing in from upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.stages.record import is_mask_probe, mask_saturation, note_massive
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState, store_keys
from cp_debug.compare.device_diff import diff_tensors, host_array
from cp_debug.compare.diff import TensorDiff
from cp_debug.errors import BadInputError


@dataclass
class LocalErrors:
    """What measuring one stage's local errors found, kept apart from the run's state until `apply`: so they can be
    measured on a helper thread (`ahead.py`) while the engine's thread compares, and land in the report where they
    always did. values: probe -> (local TensorDiff, names of the upstream probes its segment starts from)."""

    values: dict[str, tuple] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # for the stage's runner settings (segments, sessions)
    matmuls: dict[str, int] = field(default_factory=dict)  # probe -> its segment's weight-only matmuls in series

    def apply(self, run: RunState, state: CandidateState, i: int) -> dict[str, tuple]:
        """The warnings into the run's, the settings into the candidate's for stage i, the segments' weight-only
        matmuls into its `own_matmuls` (their own budget's count); returns `values`."""
        run.warnings.extend(w for w in self.warnings if w not in run.warnings)
        state.own_matmuls.update(self.matmuls)
        if self.settings:
            state.settings.setdefault(run.subject.stages[i].name, {}).update(self.settings)
        return self.values


# the weight-only ops a segment's own budget counts, with the matmuls each holds in series (QMoE: an expert's fc1,
# then its fc2; the experts side by side)
WEIGHT_ONLY_MATMULS = {"MatMulNBits": 1, "QMoE": 2}


def local_errors(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec], runner) -> dict:
    """probe -> (local TensorDiff, names of the upstream probes its segment starts from)."""
    if runner.can(Capability.RUN_SUBMODULE):
        return _submodule_errors(run, state, i, sp, runner)
    return segment_errors(run, state, i, sp, probed=runner).apply(run, state, i)


def switch_tensors(run: RunState, state: CandidateState, i: int, st) -> tuple[str, ...]:
    """The tensors whose readers the candidate's probed session (an ONNX Runtime runner's: `OrtRunner.switches`) is
    to switch to the reference's values for its local errors (`graph.switches`), where a local-error session would
    prepack weight-only kernels' weights again (MatMulNBits, QMoE: an INT4 file's 4-bit weights, 0.55 CPU s of a 0.5 B
    model's session; float kernels' local sessions are made without prepacking: `segment_why.unpacked_once`) and its
    segments run its graph as it is on the host: on the CPU, no precision transform, no float16 storage, not judged
    at INT8 (whose boundaries are its Q/DQ pairs') — the known tensors of its graph; else none (a session of their
    own, as before)."""
    spec, model = state.spec, st.onnx()
    if (not run.opts.local or spec.device != "cpu" or spec.calibrated or state.judged_at == "int8"
            or run.store.device is not None or _as_it_is(spec, model) is None
            or not any(n.op_type in WEIGHT_ONLY_MATMULS for n in model.graph.node)):
        return ()
    return tuple(run.known_tensors(i, st))


def _submodule_errors(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec], runner) -> dict:
    """torch: each probe's submodule run on the reference's captured inputs."""
    st = run.stage_of(state.label, i)
    out: dict[str, tuple] = {}
    tr = st.trace()
    for p in sp:
        if p.kind != "module":
            continue
        keys = sorted((k for k in store_keys(run.store, p.name)), key=lambda k: int(k.rsplit("in", 1)[1]))
        if not keys:
            continue
        inputs = tuple(np.asarray(run.store.get(k)) for k in keys)
        try:
            val = runner.run_submodule(p.name, inputs)
        except Exception as err:  # a submodule that cannot run alone (keyword inputs, say)
            run.warnings.append(f"{state.label}: local error of {p.name} not computed: {err}")
            continue
        loc = TensorDiff.from_arrays(p.name, run.store.get(p.name), val, run.tolerance(state, p.name))
        note_massive(state, p.name, run.store.get(p.name), val, local=True)
        prod = tr.producers.get(p.name)
        out[p.name] = (loc, [prod] if prod else [])
    return out


def segment_errors(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec],
                   noise_known: Callable[[], object] | None = None, probed=None) -> LocalErrors:
    """ONNX backends: each probe's segment cut from the nearest known reference tensors to its tensor. Reads the
    run's state (the store, the noise floor for tolerances) and writes none of it: the result says what to add.
    `noise_known`, where the reference's noise run may still be going on, is waited for before the first value is
    measured (the noise floor widens each probe's tolerance): the segments are cut and run meanwhile. `probed`: the
    candidate's probed runner, still active: where its session switches the segments' boundaries (`switch_tensors`)
    they all run there, in one run (`_in_probed_session`)."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.bisect.stages.stand_in import local_spec
    from cp_debug.bisect.stages.qdq_segments import before_pairs, ran_graph
    from cp_debug.bisect.stages.segment_held import held_boundaries
    from cp_debug.graph.plan import in_series, segment_model, tensor_types

    st = run.stage_of(state.label, i)  # a SPEC@DIR candidate: segments of its deployed file
    found = LocalErrors()
    out, notes = found.values, found.warnings
    spec, stand_in = local_spec(state)  # trt-*@KIT: ONNX Runtime on the same segment (said in the warnings)
    if stand_in is not None:
        notes.append(stand_in)

    qdq = st.qdq_onnx() if spec.precision == "int8" and spec.can(Capability.QDQ_MODEL) else None
    ran = ran_graph(state, st) if qdq is None else None  # the built-in INT8: its run's Q/DQ graph, as a file of it
    qdq = ran.model if ran is not None else qdq
    model = qdq if qdq is not None else st.onnx()  # --int8: segments of the deployed Q/DQ graph
    types = tensor_types(model)  # once per stage: each cut is typed from it (no shape inference per probe)
    inits = {init.name: init for init in model.graph.initializer}
    known, pm = run.known_tensors(i, st), st.probe_map()
    if ran is not None or (state.judged_at == "int8" and state.label in run.deployed):  # either door: one cut
        known, pm = before_pairs(model, known, pm, [p.name for p in sp if p.kind == "output"])
    store = run.store  # a candidate on the device of the store's device tier: segments fed and read there
    device = store.device if (store.device is not None and spec.device == store.device.type and qdq is None
                              and not spec.calibrated and spec.can(Capability.DEVICE_TENSORS)) else None
    quantize: dict = {}
    if device is None:  # a quantized file's integer boundaries, fed as it holds them (`segment_held.py`)
        known, quantize = held_boundaries(model, types, known)
    cuts = _cuts(run, state, sp, model, pm, known, notes)

    def measured(ps: list[ProbeSpec], cut, val) -> None:
        if noise_known is not None:
            noise_known()
        held = in_series(model, cut, WEIGHT_ONLY_MATMULS)  # weight-only roundings one after another on a path
        for p in ps:
            loc = _local_diff(run, state, p.name, val, device)
            out[p.name] = (loc, [known[b] for b in cut.inputs if known[b] in run.probes])
            found.matmuls[p.name] = held

    def feed_of(cut) -> dict:  # the segment's boundary values (taken when it runs: they may lie spilled on disk)
        return {b: quantize[b](_boundary(run, i, known[b], device)) if b in quantize
                else _as_held(_boundary(run, i, known[b], device), types.get(b)) for b in cut.inputs}

    if (cuts and device is None and qdq is None and not quantize and getattr(probed, "switched", ())
            and _in_probed_session(run, i, model, probed, cuts, known, feed_of, measured)):
        found.settings.update(local_error_segments=len(cuts), local_error_sessions=1)  # the probed one
        return found
    alone, joined = cuts, 0
    if len(cuts) > 1 and qdq is None and not spec.calibrated:  # side by side: a session per group, not per probe
        alone, joined = _side_by_side(run, spec, model, types, inits, cuts, feed_of, measured, device is not None)
    # for the report: how many segments, in how many sessions
    found.settings.update(local_error_segments=len(cuts), local_error_sessions=joined + len(alone))
    for ps, tensor, cut in alone:
        try:
            feed = feed_of(cut)
            seg = segment_model(model, cut, {b: _Typed.of(v) for b, v in feed.items()}, types, inits,
                                {tensor: store.shape(ps[0].name)})
            kw = _session_kw(run, spec, seg)
            if qdq is not None:
                kw["int8_model"] = seg
            elif spec.calibrated:
                kw["calib_feeds"] = [feed]
            with make_runner(spec, onnx_model=seg, **kw) as r:
                val = r.infer_device(feed)[tensor] if device is not None else r.infer(feed)[tensor]
        except Exception as err:
            notes += [f"{state.label}: local error of {p.name} not computed: {err}" for p in ps]
            continue
        measured(ps, cut, val)
    return found


def _in_probed_session(run: RunState, i: int, model, probed, cuts: list, known: dict, feed_of, measured) -> bool:
    """Every segment of `cuts` run in the candidate's probed session (`probed.infer_switched`): its readers of every
    segment's boundaries switched to the reference's values there, its inputs fed the reference's. What each segment
    computes alone, where no node of it reads another segment's boundary that is not its own (a tensor known under
    its probe's name too: `_cuts` leaves it inside) and every boundary is switched or an input; False otherwise (the
    segments then run in a session of their own). Each value goes to `measured`."""
    from cp_debug.graph.plan import node_reads

    switched, inputs = set(probed.switched), set(probed.input_names)
    bounds = {b for _, _, cut in cuts for b in cut.inputs}
    if not bounds <= switched | inputs or not inputs <= set(known):
        return False
    nodes = model.graph.node
    for _, _, cut in cuts:  # (a subgraph's read of a boundary is not switched: its segment runs as before)
        if any((set(node_reads(nodes[k])) & bounds) - (set(cut.inputs) & set(nodes[k].input)) for k in cut.nodes):
            return False
    given: dict = {}
    for _, _, cut in cuts:
        given.update(feed_of(cut))
    try:
        feed = {n: given[n] if n in given else _as_held(np.asarray(run.known_value(i, known[n])), None)
                for n in inputs}
    except KeyError:  # an input of the deployed file the reference's feed does not hold
        return False
    try:
        vals = probed.infer_switched(feed, {b: v for b, v in given.items() if b in switched})
    except Exception:  # noqa: BLE001 - the segments then run in a session of their own, as before
        return False
    for ps, tensor, cut in cuts:
        measured(ps, cut, vals[tensor])
    return True


def _cuts(run: RunState, state: CandidateState, sp: list[ProbeSpec], model, pm, known: dict, notes: list) -> list:
    """(the probes of one tensor, that tensor, its segment) for each probe of `sp` with a reference value and a
    tensor in `model`: a module and the child whose output it returns (a Sequential and its last layer) read one
    tensor, cut (and run) once for both. A cut that fails is said in `notes`."""
    from cp_debug.graph.plan import cut_segment

    present = {t for n in model.graph.node for t in n.output}
    cuts, of_tensor = [], {}
    everything, named = set(known), {}  # the known tensors, and those of each key: a cut's boundaries by difference
    for t, key in known.items():
        named.setdefault(key, set()).add(t)
    for k, p in enumerate(sp):
        if p.kind == "input":
            continue
        tensor = pm.tensors.get(p.name, p.name) if p.kind == "output" else pm.tensors.get(p.name)
        if tensor is None or p.name not in run.store or tensor not in present:
            continue
        if tensor in of_tensor:
            of_tensor[tensor].append(p)
            continue
        try:  # the probe's own value, under any name it is known by, is no boundary of its segment
            cut = cut_segment(model, [tensor], everything - named.get(known.get(tensor, p.name), set()) - {tensor},
                              index=k)
        except Exception as err:
            notes.append(f"{state.label}: local error of {p.name} not computed: {err}")
            continue
        of_tensor[tensor] = [p]
        cuts.append((of_tensor[tensor], tensor, cut))
    return cuts


# the local values one side-by-side session holds at once (each group's outputs): on the device an eighth of the
# store's device budget, at least 1 GiB; on the host an eighth of its memory budget
SIDE_BY_SIDE_SHARE, SIDE_BY_SIDE_MIN_BYTES = 8, 1 << 30


def _side_by_side(run: RunState, spec, model, types, inits, cuts: list, feed_of, measured,
                  on_device: bool) -> tuple[list, int]:
    """The probes' segments run side by side (`graph.grouped.side_by_side`), a session per group of them instead
    of one per probe (on the H100 each session's setup and first run cost ~30 ms: awml-base's 66 segments were a
    third of an ORT pair's bisect; on the CPU, tiny's 87 sessions of an FP16 pair became 5, every local value the
    same bit for bit), read on the device where `on_device`, else on the host; each member's value goes to
    `measured`. INT8 segments are not joined (each is calibrated and quantized on its own feed). Returns the cuts
    left to run alone (a group of one, or a group whose model or session failed) and the number of sessions that
    ran groups."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.graph.grouped import CUT_SUFFIX, side_by_side, side_by_side_groups

    by_index = {cut.index: (ps, tensor, cut) for ps, tensor, cut in cuts}
    sizes = {tensor: run.store.nbytes(ps[0].name) for ps, tensor, _ in cuts}
    alone, joined = [], 0
    # on the host, a share of the store's memory budget (--memory-budget 0: every segment alone, as it was)
    budget = (max(SIDE_BY_SIDE_MIN_BYTES, _device_share(run) // SIDE_BY_SIDE_SHARE) if on_device
              else run.store.budget // SIDE_BY_SIDE_SHARE)
    for group in side_by_side_groups([c for _, _, c in cuts], sizes, budget, _as_it_is(spec, model)):
        members = [by_index[seg.index] for seg in group]
        if len(members) == 1:
            alone += members
            continue
        try:
            feed = {b: v for _, _, cut in members for b, v in feed_of(cut).items()}
            m = side_by_side(model, group, {b: _Typed.of(v) for b, v in feed.items()}, types, inits,
                             {tensor: run.store.shape(ps[0].name) for ps, tensor, _ in members})
            with make_runner(spec, onnx_model=m, **_session_kw(run, spec, m)) as r:
                joint = {b + CUT_SUFFIX: v for b, v in feed.items()}
                vals = r.infer_device(joint) if on_device else r.infer(joint)
        except Exception:  # noqa: BLE001 - the members run alone, one session each, as before
            alone += members
            continue
        joined += 1
        for ps, tensor, cut in members:
            measured(ps, cut, vals[tensor])
        del vals, feed
    return alone, joined


def _as_it_is(spec, model):
    """`model` where `spec` runs a graph as it is (no precision transform, no float16 storage emulated), else None:
    then a node members share may be run once for them (`side_by_side_groups`); a transform decides per node from
    its consumers (an FP16 conversion keeps a node feeding an index in FP32 alone, not beside a float path), so
    joined through a node, a segment would not run as it does alone."""
    from cp_debug.backends.graph_loader import PRECISION_TRANSFORMS
    from cp_debug.precision.half_storage import holds_half_constants

    return model if spec.precision not in PRECISION_TRANSFORMS and not holds_half_constants(model) else None


def _session_kw(run: RunState, spec, model) -> dict:
    """`make_runner`'s keywords for a local-error session of `model` (a segment, or segments side by side). Each is
    run once: its weights not prepacked where `segment_why.unpacked_once` says (0.4 of a 136 M model's 1.3 CPU s
    local-error session)."""
    from cp_debug.bisect.findings.segment_why import unpacked_once

    once = unpacked_once(spec)
    return {"determinism": run.det, "spinning": False, "shared_arena": True, "graph_facts": False,
            **({"prepack": False} if once else {}), **run.ort_kwargs(spec, model)}


def _boundary(run: RunState, i: int, key: str, device):
    """A segment's boundary value: numpy, or a torch tensor on `device` (the store's device value where it keeps
    one, else the host value copied there)."""
    if device is None:
        return np.asarray(run.known_value(i, key))
    kept = run.store.device_value(key)
    if kept is not None:
        return kept
    import torch

    return torch.from_numpy(np.ascontiguousarray(run.known_value(i, key))).to(device)


def _as_held(value, declared):
    """A boundary value as the candidate's graph holds that tensor: the reference's float32 rounded to float16 where
    the graph (a deployed FP16 file) declares float16 there. Fed as float32, the segment would be typed float32 from
    its input on, nothing in it would be float16 storage, and an overflow inside it (diffusers' VAE decoder file:
    a conv at 1.69e5) would never show in its local error."""
    from onnx import TensorProto

    if declared is None or declared.tensor_type.elem_type != TensorProto.FLOAT16:
        return value
    if isinstance(value, np.ndarray):
        return value.astype(np.float16) if value.dtype == np.float32 else value
    import torch

    return value.to(torch.float16) if value.dtype == torch.float32 else value


@dataclass(frozen=True)
class _Typed:
    """What `segment_model` reads of a feed value: its numpy dtype and shape (a torch tensor's too)."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @classmethod
    def of(cls, value) -> "_Typed":
        if isinstance(value, np.ndarray):
            return cls(value.dtype, value.shape)
        return cls(np.dtype(str(value.dtype).removeprefix("torch.")), tuple(value.shape))


def upstream_names(run: RunState, i: int, tensor: str, states: list[CandidateState]) -> tuple[str, ...]:
    """The nearest probes (of any pass so far) that `tensor` depends on: what amplification divides by."""
    from cp_debug.graph.segment import segment_inputs

    st = run.subject.stages[i]
    pm = st.probe_map()
    measured = set().union(*(s.results for s in states)) if states else set()
    known = {n: n for n in st.input_names}
    for name in measured:
        p = run.probes.get(name)
        if p is not None and p.stage == i and p.kind == "module" and name in pm.tensors:
            known.setdefault(pm.tensors[name], name)
    try:
        found = segment_inputs(st.onnx(), [tensor], set(known) - {tensor})
    except BadInputError:
        return ()
    return tuple(known[t] for t in found if known[t] in measured or t in st.input_names)


def _local_diff(run: RunState, state: CandidateState, name: str, val, device) -> TensorDiff:
    """A probe's local value against the reference, where the store keeps it (a mask's on the host, its saturated
    fill taken as equal, as its propagated value's)."""
    store = run.store
    kept = store.device_value(name) if device is not None else None
    mask = is_mask_probe(run, state, name)
    if kept is not None and not mask:
        return diff_tensors(name, kept, val, run.tolerance(state, name), one_pass=True)
    val = host_array(val) if device is not None else val
    if mask:
        val, _ = mask_saturation(store.get(name), np.asarray(val))
    note_massive(state, name, store.get(name), val, local=True)
    return TensorDiff.from_arrays(name, store.get(name), val, run.tolerance(state, name))


def _device_share(run: RunState) -> int:
    """What the side-by-side groups share on the device: the device tier's share of the whole card (what it gets on
    an idle one), not of the memory free as this run started, so that the groups — the sessions made, the report's
    `local_error_sessions` — are the same whatever else holds the card: on an H200, a server's commands with the
    kept sessions' arenas grown (46-66 GB) saw other free memory from one command to the next, and other than a
    process of its own, so made other groups and graphs, and could not take the sessions the command before kept.
    A tier on the host (`--device-budget`, torch CPU tensors) keeps its own budget."""
    from cp_debug.bisect.store import DEVICE_SHARE

    device = run.store.device
    if device is None or device.type != "cuda":
        return run.store.device_budget
    import torch

    return int(torch.cuda.get_device_properties(device).total_memory * DEVICE_SHARE)
