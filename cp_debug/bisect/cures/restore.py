"""A candidate restored and run to its stage's outputs: the intervention that confirms a root cause (issue 115, item 1).

A probe is restored in the candidate's own terms: a built-in FP16 / BF16 candidate keeps the probe's nodes (every
ONNX node its module created, else the node that writes its tensor) in FP32 — the `--keep-fp32` cure itself —, a
built-in INT8 / FP8 candidate leaves them out of its quantisation (`--exclude-int8`), and a candidate running the
user's own files (`SPEC@DIR`, whose precision is in the file) has the node writing the probe's tensor left out of the
file's quantization where it reads through a Q/DQ pair (`qdq_removal.without_qdq`: what `nodes_to_exclude` does, the
built-in's restoration in the file's terms), in a user's FP16 file kept in FP32 in it (`fp16_keep.kept_float`: what
`node_block_list` does), else the probe's tensor replaced by the reference's value (its consumers read a new graph
input fed with it). Tensors are candidates too: a file's shared scale (`UNPAIRED`, `shared_scale.py`) and a file's
constant off the reference's (`CONSTANT`, `constants.py`). The stage then runs whole, as the candidate runs it, on
the reference's stage inputs, and each stage output is judged against the reference's by the judge every cure shares
(`compare/cure_judge.passes`; an output whose length the data decides over the steps both have, `compare/lengths`),
with the decisions its outputs carry (`findings/decisions.py`: a length that differs is one) compared too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.compare.diff import TensorDiff

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.run_state import CandidateState, RunState

KEEP, EXCLUDE, REPLACE = "kept in FP32", "left out of INT8", "its tensor replaced by the reference's"
UNPAIRED = "its scale's Q/DQ pairs removed"  # a tensor candidate: a user's file's shared scale (cures/shared_scale)
CONSTANT = "its constant replaced by the reference's"  # a tensor candidate: a user's file's constant (cures/constants)
KEPT_FLOAT = "kept float (its Q/DQ pairs removed)"  # a file's pairs that flush before a Log (findings/qdq_flush)


@dataclass(frozen=True)
class Restoration:
    """One candidate restored: the probe, how (`KEEP` / `EXCLUDE` / `REPLACE`), the nodes kept or left out, or the
    tensor replaced."""

    probe: str
    stage: int
    how: str
    nodes: tuple[str, ...] = ()
    tensor: str | None = None
    segment: bool = False  # its whole segment, not only its module's own nodes (`widened`)
    detail: object = field(default=None, compare=False)  # UNPAIRED: its `shared_scale.SharedScale`
    source: str | None = None  # an examiner's keep set ("the index flip's keep set"), not the probe's own nodes
    in_file: bool = False  # EXCLUDE in a user's Q/DQ file: its nodes' pairs removed (`_file_exclusion`)
    alone: bool = False  # the probe's nodes alone in the candidate's precision: `nodes` are every other one (`alone`)
    fmt: str = "INT8"  # EXCLUDE: the format the nodes are left out of, the candidate's own (`quantized_as`)

    def how_words(self) -> str:
        """`how` in the candidate's own precision: left out of FP8 / NVFP4 / MXFP8 where it is not INT8."""
        return f"left out of {self.fmt}" if self.how == EXCLUDE else self.how

    def words(self) -> str:
        if self.alone:
            return (f"{self.probe} alone in {'FP16' if self.how == KEEP else self.fmt} (every other node "
                    f"{self.how_words()})")
        if self.source:
            return f"{self.probe} ({self.source}: {len(self.nodes)} node(s) {self.how_words()})"
        if self.how == REPLACE:
            return f"{self.probe} ({self.how})"
        if self.how in (UNPAIRED, CONSTANT):
            return f"{self.probe} ({self.detail.words() if self.detail is not None else self.how})"
        if self.how == KEPT_FLOAT:
            return f"{self.probe} ({self.detail.words(self.segment) if self.detail is not None else self.how})"
        return f"{self.probe} ({len(self.nodes)} node(s){' of its segment' if self.segment else ''} {self.how_words()})"


@dataclass(frozen=True)
class Elementwise:
    """An output that fails the element-wise check of `cure_judge.passes` (|Δ| ≤ atol + rtol·|ref| on all but
    `allowed` elements), with the judge's own numbers: which output, how many elements beyond, the largest |Δ|."""

    output: str
    beyond: int
    allowed: int
    max_abs: float
    atol: float
    rtol: float
    nonfinite: int = 0

    def words(self) -> str:
        if self.nonfinite:
            return f"{self.nonfinite} NaN/Inf element(s) in {self.output}"
        return (f"{self.beyond} element(s) of {self.output} beyond the tolerance |Δ| ≤ {self.atol:.2g} + "
                f"{self.rtol:.2g}·|ref| ({self.allowed} allowed; max |Δ| {self.max_abs:.2g})")


@dataclass(frozen=True)
class OutputError:
    """A run's stage outputs against the reference's: the worst output's error ÷ its budget (`ratio`, the RMS
    budget's), its rel. RMSE, whether every output passes, and the decisions that flip."""

    ratio: float
    rel_rmse: float
    passes: bool
    flips: int = 0
    # every output within its budget as the verdict judges it in model mode (`noise.status_of`: no element-wise
    in_budget: bool = False  # tolerance): a run whose outputs are so, with no decision flipped, has nothing to confirm
    # the output failing the element-wise check with the most elements beyond (None where every output holds it)
    elementwise: Elementwise | None = field(default=None, compare=False)
    tie: str = field(default="", compare=False)  # the outputs read at 0.5 / argmax that flip (`tie_words`)
    unbuilt: str = field(default="", compare=False)  # the restoration could not be built or run: why (`attempted`)
    held: frozenset = field(default=frozenset(), compare=False)  # the outputs within their budget (`status_of`)

    def short(self, budget: bool = True) -> str:
        """`ratio` as a list of runs says it; one within the RMS budget and still beyond the element-wise tolerance
        says so where the words speak of the budget (`budget`; judged by --atol/--rtol they name the tolerance)."""
        if self.unbuilt:
            return f"could not be built: {self.unbuilt}"
        e, held = self.elementwise, budget and not self.passes and self.ratio <= 1
        if not held:
            return f"{self.ratio:.3g}×"
        return f"{self.ratio:.3g}×" + (f" ({e.beyond} element(s) of {e.output} beyond the tolerance)" if e is not None
                                       else ", element-wise beyond")  # swift-f0's FP16 half: 0.0288×, not back

    def figures(self, before: "OutputError") -> str:
        """This run's worst output against `before`'s, with the check that fails where the ratio alone reads as back
        (within the RMS budget, yet elements beyond the tolerance)."""
        said = f"worst output {before.ratio:.3g}× → {self.ratio:.3g}× its budget"
        if self.passes or self.ratio > 1 or self.elementwise is None:
            return said
        return said.replace("its budget", "its RMS budget") + f", yet {self.elementwise.words()}"

    @property
    def back(self) -> bool:
        """Every output within its budget and no decision flipped: the run is back."""
        return self.passes and self.flips == 0

    def to_json(self) -> dict:
        def num(x: float) -> float | None:
            return round(x, 4) if math.isfinite(x) else None
        return {"ratio": num(self.ratio), "rel_rmse": num(self.rel_rmse), "within": self.passes,
                "decisions_flipped": self.flips, **({"could_not_build": self.unbuilt} if self.unbuilt else {})}


@dataclass(frozen=True)
class AtOutputs:
    """Advice run at the outputs: the candidate's outputs as the intervention found them (`before`) and with the
    advice applied (`after`), judged alike (`restore.output_error`)."""

    before: OutputError
    after: OutputError

    @property
    def back(self) -> bool:
        return self.after.back

    def figures(self) -> str:
        flips = f", {self.after.flips} decision(s) flipped" if self.after.flips else ""
        return f"{self.after.figures(self.before)}{flips}"


def restoration(run: "RunState", state: "CandidateState", probe: str) -> Restoration | None:
    """`probe` restored in the candidate's terms (module docstring), or None where it cannot be (no tensor, no node,
    a candidate whose runner takes no node lists)."""
    spec = state.spec
    held = probe_tensor(run, state, probe) if spec.runs_onnx else None
    if held is None:
        return None
    st, tensor, kind = held
    p = run.probes[probe]
    if spec.onnx_dir is not None:  # a user's Q/DQ file: its writer left out of the file's quantization, as the
        writer = _file_exclusion(run, st, p.stage, tensor)  # built-in leaves it out of its own (one story)
        if writer is not None:
            return Restoration(probe, p.stage, EXCLUDE, nodes=(writer,), in_file=True, fmt=quantized_as(state))
        from cp_debug.bisect.cures.fp16_keep import keeps_float  # a user's FP16 file: its writer kept in FP32

        writer = keeps_float(st.onnx(), tensor) if state.judged_at == "fp16" else None
        if writer is not None:
            return Restoration(probe, p.stage, KEEP, nodes=(writer,), in_file=True)
        return Restoration(probe, p.stage, REPLACE, tensor=tensor) if probe in run.store else None
    how = KEEP if spec.precision in ("fp16", "bf16") else EXCLUDE if spec.precision in (
        "int8", "fp8", "nvfp4", "mxfp8") else None
    if how is None:
        return None
    nodes = probe_nodes(st, probe, tensor, kind)
    r = Restoration(probe, p.stage, how, nodes=nodes, fmt=quantized_as(state)) if nodes else None
    from cp_debug.bisect.cures.quantized_writer import onto_quantized  # a node the built-in quantizes

    return r if r is None or how == KEEP else onto_quantized(run, state, r, tensor)


def quantized_as(state: "CandidateState") -> str:
    """The format a candidate's restorations leave nodes out of: its precision (a user's file: the one it was
    judged at), INT8 where it is none of the quantized formats."""
    p = state.judged_at if state.spec.onnx_dir is not None and state.judged_at else state.spec.precision
    return p.upper() if p in ("int8", "fp8", "nvfp4", "mxfp8") else "INT8"


def _file_exclusion(run: "RunState", st, stage: int, tensor: str) -> str | None:
    """The node writing `tensor` in a user's Q/DQ file where it reads through a DequantizeLinear, or a QOperator
    file's integer op (by the FP32 graph's name, `qoperator_exclusion`), that can be left out of its quantization
    (`qdq_removal.without_qdq`); else None (the tensor is then replaced by the reference's)."""
    from cp_debug.bisect.cures import qdq_removal as qr, qoperator_exclusion as qo

    model = st.onnx()
    producer = {o: n for n in model.graph.node for o in n.output}
    writer = producer.get(tensor)
    while writer is not None and writer.op_type in ("QuantizeLinear", "DequantizeLinear"):  # the probe's pair
        writer = producer.get(writer.input[0])
    dq, ref = {o for o, n in producer.items() if n.op_type == "DequantizeLinear"}, run.subject.stages[stage].onnx()
    name = qo.qoperator_writer(model, ref, writer) if writer is not None else None  # a QOperator file's integer op
    if writer is None or not (name or writer.name and any(x in dq for x in writer.input)):
        return None
    try:
        qr.without_qdq(model, [name or writer.name], ref)
    except qr.NoFloatWeight:
        return None
    return name or writer.name


def widened(run: "RunState", state: "CandidateState", r: Restoration) -> Restoration | None:
    """`r` over the probe's whole segment — every node between the tensors whose reference value is known and the
    probe's tensor, as its local error ran it (code its parent runs between its children: an attention's QK^T and
    softmax before its `out` projection) — where that holds more than the module's own nodes; else None."""
    if r.how == REPLACE or state.spec.onnx_dir is not None:  # a user's file: its writer's pairs only
        return None
    st = run.stage_of(state.label, r.stage)
    pm = st.probe_map()
    p = run.probes[r.probe]
    tensor = r.probe if p.kind == "output" else pm.tensors.get(r.probe)
    model = st.onnx()
    known = ({pm.tensors[n] for n, q in run.probes.items() if q.stage == r.stage and n in pm.tensors}
             | set(st.input_names)) - {tensor}  # every probe's tensor bounds a segment, stored or not
    writer = {t: n for n in model.graph.node for t in n.output}
    seen, todo = set(), [tensor]
    while todo:
        n = writer.get(todo.pop())
        if n is None or n.name in seen or n.op_type == "Constant":
            continue
        seen.add(n.name)
        todo += [x for x in n.input if x and x not in known]
    nodes = tuple(n.name for n in model.graph.node if n.name in seen or n.name in r.nodes)
    return replace(r, nodes=nodes, segment=True) if set(nodes) > set(r.nodes) else None


def alone(run: "RunState", state: "CandidateState", r: Restoration) -> Restoration | None:
    """`r`'s nodes alone left in the candidate's precision: every other node of its stage kept in FP32 / left out of
    INT8 (a user's file: every other node's Q/DQ pairs removed) — whether that layer alone breaks the outputs; None
    for a restoration of another kind."""
    if r.how not in (KEEP, EXCLUDE) or r.alone:
        return None
    model = run.stage_of(state.label, r.stage).onnx()
    skip = {"Constant", "QuantizeLinear", "DequantizeLinear"}
    others = tuple(n.name for n in model.graph.node if n.name and n.op_type not in skip and n.name not in r.nodes)
    return replace(r, nodes=others, alone=True, segment=False, source=None) if others else None


def probe_tensor(run: "RunState", state: "CandidateState", probe: str) -> tuple[object, str, str] | None:
    """(its stage in `state`'s terms, the tensor that holds `probe`, its kind), or None where it has none."""
    p = run.probes.get(probe)
    if p is None:
        return None
    st = run.stage_of(state.label, p.stage)
    pm = st.probe_map()
    tensor = probe if p.kind == "output" else (pm.tensors.get(probe) if pm is not None else None)
    return (st, tensor, p.kind) if tensor is not None else None


def own_nodes(run: "RunState", state: "CandidateState", probe: str):
    """(the stage graph `probe` lies in, in `state`'s terms, the names of the nodes it stands for), or None."""
    held = probe_tensor(run, state, probe)
    if held is None:
        return None
    st, tensor, kind = held
    return st.onnx(), set(probe_nodes(st, probe, tensor, kind))


def probe_nodes(st, probe: str, tensor: str, kind: str) -> tuple[str, ...]:
    """The ONNX nodes `probe` stands for: every node its module created (its scope chain holds it), else the node
    that writes its tensor."""
    model = st.onnx()
    if kind == "module" and st.module is not None:
        from cp_debug.probes.naming import node_scopes

        names = {n for n, _ in st.module.named_modules() if n}
        scoped = tuple(node.name for node, chain in zip(model.graph.node, node_scopes(model, names))
                       if probe in chain and node.op_type != "Constant" and node.name)
        if scoped:
            return scoped
    return tuple(n.name for n in model.graph.node if tensor in n.output and n.name)


def run_restored(run: "RunState", state: "CandidateState", stage: int, restored: list[Restoration]
                 ) -> dict[str, np.ndarray]:
    """Stage `stage` run whole as the candidate runs it, on the reference's stage inputs, with `restored` applied;
    its outputs by name."""
    from cp_debug.backends.factory import make_runner

    spec = state.spec
    model = run.stage_of(state.label, stage).onnx()
    feed = dict(run.ref_feeds[stage])
    replaced = [r for r in restored if r.how == REPLACE]
    if replaced:
        from cp_debug.bisect.cures.reference_inputs import with_reference_inputs

        model, fed = with_reference_inputs(model, {r.tensor: np.asarray(run.store.get(r.probe)) for r in replaced})
        feed.update(fed)
    unpaired = [n for r in restored if r.how in (UNPAIRED, KEPT_FLOAT) for n in r.nodes]
    if unpaired:
        model = _without_pairs(model, set(unpaired))
    for r in restored:
        if r.how == CONSTANT:  # its `constants.ConstantOff` puts the reference's value in
            model = r.detail.put(model)
    exclude = [n for r in restored if r.how == EXCLUDE for n in r.nodes]
    if exclude and spec.onnx_dir is not None:  # a user's file: the nodes' Q/DQ pairs removed (`_file_exclusion`)
        from cp_debug.bisect.cures.qdq_removal import reference_values, without_qdq

        model, exclude = without_qdq(model, list(dict.fromkeys(exclude)), run.subject.stages[stage].onnx(),
                                     values=lambda names: reference_values(run, state, stage, names, [])), []
    keep = [n for r in restored if r.how == KEEP for n in r.nodes]
    if keep and spec.onnx_dir is not None:  # a user's FP16 file: the nodes kept in FP32 in the file (`fp16_keep`)
        from cp_debug.bisect.cures.fp16_keep import kept_float

        model, keep = kept_float(model, dict.fromkeys(keep), run.subject.stages[stage].onnx()), []
    kw = {"determinism": run.det, "spinning": False, "graph_facts": False, **run.ort_kwargs(spec, model)}
    if keep:
        kw["keep_fp32_nodes"] = list(dict.fromkeys([*kw.get("keep_fp32_nodes", ()), *keep]))
    if exclude:
        kw["exclude_int8_nodes"] = list(dict.fromkeys([*kw.get("exclude_int8_nodes", ()), *exclude]))
    if spec.calibrated and spec.onnx_dir is None:  # calibrated as the candidate was
        kw["calib_feeds"] = run.calib(stage) if not replaced else [feed]
    with make_runner(spec, onnx_model=model, **kw) as r:
        out = r.infer(feed)
    return {k: np.asarray(v) for k, v in out.items()}


def _without_pairs(model, nodes: set[str]):
    """`model` without the QuantizeLinear / DequantizeLinear nodes named in `nodes`: each pair's readers read the
    float tensor that entered it (a graph output written by a pair is written by the float tensor's producer)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    source = {}  # a removed DequantizeLinear's output -> the float tensor its QuantizeLinear read
    paired = set()  # the pairs' node names (a weight's lone DequantizeLinear stays)
    for n in g.node:
        if n.name in nodes and n.op_type == "DequantizeLinear":
            q = producer.get(n.input[0])
            if q is not None and q.name in nodes and q.op_type == "QuantizeLinear":
                source[n.output[0]] = q.input[0]
                paired |= {n.name, q.name}
    outputs = {o.name for o in g.output}
    for dq_out, src in source.items():
        if dq_out in outputs:  # the float tensor's producer writes the graph output itself
            for n in g.node:
                n.output[:] = [dq_out if o == src else o for o in n.output]
                n.input[:] = [dq_out if i == src else i for i in n.input]
            for k, v in source.items():
                source[k] = dq_out if v == src else v
    for n in g.node:
        n.input[:] = [source.get(i, i) for i in n.input]
    kept = [n for n in g.node if n.name not in paired]
    del g.node[:]
    g.node.extend(kept)
    return m


def cure_words(restored: tuple[Restoration, ...]) -> str:
    """The restorations as the user applies them: `--keep-fp32` / `--exclude-int8` with the nodes, or a user's
    file re-quantized with them in `nodes_to_exclude`."""
    nodes = list(dict.fromkeys(n for r in restored if r.how in (KEEP, EXCLUDE) for n in r.nodes))
    if not nodes:
        return ""
    if any(r.in_file for r in restored):
        return f"re-quantize with `nodes_to_exclude={nodes!r}`"
    return f"--{'keep-fp32' if restored[0].how == KEEP else 'exclude-int8'} {','.join(nodes)}"


def keep_at_outputs(run: "RunState", state: "CandidateState", r: Restoration) -> "OutputError | None":
    """A keep set verified on its segment only, run at the outputs where it could be the smaller cure: not where the
    confirmation restores its probe already, only with fewer nodes than the confirmation (one run of the stage);
    None where it is not run (there, or it cannot be: said in the run's warnings)."""
    found = state.intervention
    c = found.cure if found is not None else None
    if found is None or r.stage != found.stage or (r,) in {t.restored for t in found.tried} or (
            c is not None and len(c.restored) == 1 and c.restored[0].probe == r.probe):
        return None
    if c is not None and len(r.nodes) >= len([n for x in c.restored for n in x.nodes]):
        return None
    try:
        return output_error(run, state, found.stage, run_restored(run, state, found.stage, [r]))
    except Exception as err:  # noqa: BLE001 - the confirmation stands where the keep set cannot be run
        run.warnings.append(f"{state.label}: {r.words()} was not run at the outputs: {err}")
        return None


def output_error(run: "RunState", state: "CandidateState", stage: int, out: dict[str, np.ndarray],
                 held: frozenset = frozenset()) -> OutputError:
    """`out` (a stage's outputs) against the reference's: every output by `cure_judge.passes`, the worst one's
    error ÷ budget, the decisions its outputs carry that flip (`findings/decisions.py`). `held`: outputs judged by
    their budget alone (within it before a restoration, an element-wise miss is the run's own: an INT4 KV cache)."""
    from cp_debug.bisect.findings.decisions import output_decisions, tie_words
    from cp_debug.compare import cure_judge, lengths

    ref, st = run.ref_outputs.get(stage, {}), run.subject.stages[stage]
    worst, worst_rel, passes, budget, failed, within = 0.0, 0.0, True, True, None, set()
    cut = lengths.lengths_differ(st.output_names, lambda: st.onnx_model, ref, out)  # a length the data decides
    for name in st.output_names:
        if name not in ref or name not in out:
            continue
        tol = run.tolerance(state, name)  # a length the data decides: the steps both have, judged by their numbers
        d = TensorDiff.from_arrays(name, *lengths.common_prefix(np.asarray(ref[name]), out[name], cut.get(name)), tol)
        j = run.judge(state, name, d)
        if ok := cure_judge.within(d, j):
            within.add(name)
        passes = passes and cure_judge.passes(d, state.judged_at, j, name in held)
        budget = budget and ok
        ratio = j.noise_ratio if math.isfinite(j.noise_ratio) else math.inf
        if ratio >= worst:
            worst, worst_rel = ratio, d.rel_rmse
        if d.status != "ok" and d.shape_ok and name not in held:
            e = _elementwise(d, tol)
            failed = e if failed is None or (e.nonfinite, e.beyond) > (failed.nonfinite, failed.beyond) else failed
    decided = [d for d in output_decisions(run, stage, ref, out) if d.decisive]
    return OutputError(worst, worst_rel, passes, sum(d.flipped for d in decided), budget, failed,
                       tie_words(decided, state.spec.precision), held=frozenset(within))


def measured(run: "RunState", state: "CandidateState", stage: int, rs: list[Restoration],
             held: frozenset = frozenset()) -> OutputError:
    """`output_error` with `rs` restored (`run_restored`), or a run not back saying why it could not (`attempted`)."""
    return attempted(lambda: output_error(run, state, stage, run_restored(run, state, stage, rs), held))


def attempted(measure) -> OutputError:
    """`measure()`; where it raises, one restoration that cannot be built or run (ONNX Runtime refuses its graph) is
    said ("could not be built: <why>"), never back, the others still run (CPDEBUG_DEBUG=1: raised as it came)."""
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - one restoration that cannot be built is said; the others still run
        from cp_debug.errors import debug_enabled, first_line

        if debug_enabled():
            raise
        why = f"{type(err).__name__}: {first_line(err)}" if str(err).strip() else type(err).__name__
        return OutputError(math.inf, math.inf, False, unbuilt=why)


def _elementwise(d: TensorDiff, tol) -> Elementwise:
    """`d`'s element-wise check in the tolerance's numbers: its elements beyond, those the tolerance allows."""
    size = int(np.prod(d.ref_shape)) if d.ref_shape else 1
    return Elementwise(d.name, int(round(d.share_beyond * size)), int(tol.max_share * size), d.max_abs, tol.atol,
                       tol.rtol, d.nan + d.inf)
