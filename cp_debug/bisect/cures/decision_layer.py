"""The layer that alone holds a decision (issue 115, items 1 and 3): where no restoration brings the outputs back within
their budget, the one that alone breaks the decision (`breaks`), and the one that alone brings the decision back
(`early`, `at_decision`) — a declared one (`--metric`) or, without it, the outputs a Sigmoid / Softmax writes read at
0.5 / their argmax (`decision`, `findings/decisions`), the decisions the run judges.

A user declares what the application decides (`--metric NAME|FILE.py:FUNC`), or the outputs say it; where the candidate
changes it and its outputs are beyond their budget, a layer whose restoration brings that decision back and takes away
most of the outputs' error (at least 1 - `CARRIES` of it) is the root at the decision, though its outputs stay beyond
the budget: the budget is the probes' expected rounding, the decision what the user said matters. Among several that do,
the one that leaves the least error. The own-error ranking does not propose every such layer: an early layer's rounding
passes through every layer after it, which amplify it, while its own error is measured at its own output (open_nsfw's
per-tensor INT8 file: its stem conv `Conv__440`, ×3.11 its probe's budget, ranked below the six the set search takes;
left out of INT8 alone it takes image 17's score from 0.816 back to the reference's band, the outputs 10.6× → 1.9× their
budget, where each of the ranked leaves ≥ 6.2×). So the first `EARLY` quantized layers holding a weight, in graph order,
not yet tried, are each restored alone too (`EARLY` runs of the stage, only where a decision moved and nothing brought
the outputs back). The same without `--metric`: the stem's graph read at its Softmax's argmax
(tests/bisect/test_stem_at_decision.py) flips 15 of 64 labels, the stem left out none, each other layer 13–15."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cp_debug.bisect.cures.restore import EXCLUDE, KEEP, OutputError, Restoration
from cp_debug.bisect.cures.set_search import Tried

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.result import ProbeResult
    from cp_debug.bisect.run_state import CandidateState, RunState

CARRIES = 0.5  # a layer alone in the format breaking the outputs with this share of the candidate's error: the last;
# restored alone, bringing a declared decision back and leaving at most this share of it: the root at the decision
UNIQUE_AMONG = 3  # the layers restored alone among which one alone bringing the decision back is the root at it
EARLY = 3  # the first layers holding a weight, in graph order, restored alone where a decision moved
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def declared(run: "RunState", stage: int) -> bool:
    """The run declares its decision (`--metric`), read on the last stage's outputs (`decisions.output_decisions`)."""
    return getattr(run.opts, "metric", None) is not None and stage == len(run.subject.stages) - 1


def decision(run: "RunState", stage: int) -> str:
    """What stage `stage`'s outputs decide, in words (`decisions.output_decisions`' rule): the declared `--metric`'s
    name, else the outputs a Sigmoid / Softmax writes, read at 0.5 / their argmax (no `--metric`: the decisions the
    run judges are those); "" where they decide nothing."""
    from cp_debug.bisect.findings.decisions import THRESHOLD, decided_outputs

    if declared(run, stage):
        return f"--metric {run.opts.metric.name}"
    read = decided_outputs(run.subject.stages[stage])
    return ", ".join(f"'{name}' at {f'{THRESHOLD:g}' if op == 'Sigmoid' else 'its argmax'}"
                     for name, op in read.items())


def early(run: "RunState", state: "CandidateState", stage: int, results: list["ProbeResult"], tried: list[Tried]
          ) -> list[Restoration]:
    """The first `EARLY` probes of `stage` (`results`: graph order) whose restoration in the candidate's terms leaves
    one node holding a weight out of its precision (a Conv / Gemm / MatMul reading a constant), not yet in `tried`."""
    from cp_debug.bisect.cures.restore import restoration
    from cp_debug.graph.model import constant_tensors, wiring

    model = run.stage_of(state.label, stage).onnx()
    if model is None:
        return []
    nodes = model.graph.node
    consts, writer, by_name = constant_tensors(model.graph), wiring(nodes)[0], {n.name: n for n in nodes}

    def weighted(name: str) -> bool:  # its weight a constant, read directly or through a DequantizeLinear
        n = by_name.get(name)
        if n is None or n.op_type not in WEIGHTED or len(n.input) < 2:
            return False
        w = nodes[writer[n.input[1]]] if n.input[1] in writer else None
        return n.input[1] in consts or (w is not None and w.op_type == "DequantizeLinear" and w.input[0] in consts)

    done = {t.restored[0].nodes for t in tried if len(t.restored) == 1 and not t.restored[0].alone}
    out: list[Restoration] = []
    for p in results:
        if len(out) == EARLY:
            break
        r = restoration(run, state, p.probe) if run.probes.get(p.probe) and run.probes[p.probe].stage == stage \
            else None
        if r is None or r.how not in (EXCLUDE, KEEP) or len(r.nodes) != 1 or r.nodes in done \
                or not weighted(r.nodes[0]):
            continue
        done.add(r.nodes)
        out.append(r)
    return out


def at_decision(tried: list[Tried], before: OutputError) -> Tried | None:
    """Of the layers restored alone in `tried` (their nodes kept in FP32 / left out of INT8: not a layer alone in the
    format, not a half, not a tensor — a shared scale's pairs removed there are the file's tensor, which the
    quantizer's own exclusion may not give: pythainlp's deepcut, `shared_scale.with_cure`), the one that brings every
    decision back with the least error left, where that is at most `CARRIES` of `before`'s; else the only one of at
    least `UNIQUE_AMONG` restored alone that brings it back with less error than `before`; None where none does."""
    alone = [t for t in tried if len(t.restored) == 1 and not (t.spread or t.hides or t.restored[0].alone)
             and t.restored[0].how in (EXCLUDE, KEEP) and not t.after.unbuilt and math.isfinite(t.after.ratio)]
    back = [t for t in alone if before.flips and not t.after.flips and t.after.ratio < before.ratio]
    most = [t for t in back if t.after.ratio <= CARRIES * before.ratio]
    if most:
        return min(most, key=lambda t: t.after.ratio)
    # none takes most of the error away: the one layer of those restored alone that brings the decision back, the
    # others leaving it flipped, still holds it (MediaPipe's hand landmarks in the built-in INT8: its first conv left
    # out, 23.8× → 13.6×, the presence back, six others each ≥ 26.5× with it flipped — where another layer alone in
    # INT8 that breaks it was named beside that root, two layers in one verdict); two or more that each bring it back
    # are a tie they tip (`tie_words`), no root
    return back[0] if len(back) == 1 and len(alone) >= UNIQUE_AMONG else None


def weight_in_float(run: "RunState", state: "CandidateState", decided: Tried) -> Restoration | None:
    """Where the layer at the decision (`decided`) is a user's file's node reading a quantized weight: that weight
    alone read in float (the reference's value in its slot, `constants.ConstantOff`; its input's pair kept), one run
    that says whether the weight's rounding is the mechanism (`findings/quantized/weight_steps.py` reads it); None
    otherwise."""
    import numpy as np
    from onnx import numpy_helper

    from cp_debug.bisect.cures.constants import ConstantOff, read_constant
    from cp_debug.bisect.cures.restore import CONSTANT

    r = decided.restored[0]
    if state.spec.onnx_dir is None or r.how != EXCLUDE or len(r.nodes) != 1:
        return None
    model, ref = run.stage_of(state.label, r.stage).onnx(), run.subject.stages[r.stage].onnx()
    node = next((n for n in model.graph.node if n.name == r.nodes[0]), None)
    theirs = next((n for n in ref.graph.node if n.name == r.nodes[0]), None)
    dq = next((n for n in model.graph.node if node is not None and len(node.input) > 1 and n.output[0] ==
               node.input[1] and n.op_type == "DequantizeLinear"), None)
    want = next((numpy_helper.to_array(i) for i in ref.graph.initializer
                 if theirs is not None and len(theirs.input) > 1 and i.name == theirs.input[1]), None)
    if dq is None or want is None or not np.issubdtype(want.dtype, np.floating):
        return None
    from cp_debug.graph.model import constant_tensors

    protos = constant_tensors(model.graph)
    got, _ = read_constant(node.input[1], {}, {dq.output[0]: dq}, protos)
    if got is None or got.shape != want.shape:
        return None
    want = want.astype(np.float64)
    rel = float(np.sqrt(np.mean((got - want) ** 2) / max(float(np.mean(want ** 2)), 1e-30)))
    c = ConstantOff(node.name, node.op_type, 1, dq.input[0], float(np.mean(got != want)), rel, want.astype(np.float32))
    return Restoration(r.probe, r.stage, CONSTANT, nodes=(node.name,), tensor=dq.input[0], detail=c)


def said(decision_words: str) -> str:
    """"the declared decision" for a `--metric` (`decision`'s words), else "the decision"."""
    return "the declared decision" if decision_words.startswith("--metric ") else "the decision"


def words(found, metric: str, tried: str) -> str:
    """The intervention's words where its cure is back at the decision only (`found.decided`; `metric`: `decision`'s
    words)."""
    t, b = found.decided, found.before
    r = t.restored[0]
    what = r.words() if r.source else f"{r.probe} {r.how_words()} alone"  # an examiner's keep set: its nodes said
    which = ("the most of the candidate's error any restoration tried takes away" if t.after.ratio <= CARRIES * b.ratio
             else "the only layer restored alone that brings it back, each other leaving it flipped")
    return (f"confirmed at the decision: {what} brings {said(metric)} back "
            f"({metric.removeprefix('--metric ')}), its outputs still beyond their budget (worst output "
            f"{b.ratio:.3g}× → {t.after.ratio:.3g}×,"
            f" {b.flips} decision(s) flipped before, none after) — {which} (tried {tried}; the first {EARLY} "
            "layers holding a weight, in graph order, restored "
            "alone too: an early layer's rounding is amplified by the layers after it, its own error small)")


def breaks(run: "RunState", state: "CandidateState", pool: list[Restoration], tried: list[Tried],
           measure, before: OutputError) -> str | None:
    """The ranked candidates (the set search's pool, `SET_FROM`), most first, each alone in the candidate's precision,
    every other node restored (`restore.alone`), run at the outputs (appended to `tried`): the first that breaks them
    — a decision they carry flipped by it alone — with at least `CARRIES` of the candidate's own error at the outputs;
    else, the pool run, the one of those that break them whose error alone is the largest (a near tie any layer's
    rounding tips is not the layer that holds the damage: openwakeword's speech embedding in INT8, its first Conv alone
    takes a wake word's frames from 0.52 to 0.15, a layer ranked above it tips one by 0.02); None where none alone
    does."""
    from cp_debug.bisect.cures.restore import alone

    breaking: list[tuple[float, int, str]] = []
    for k, r in enumerate(pool):
        a = alone(run, state, r)
        if a is None:
            continue
        try:
            tried.append(Tried((a,), measure([a])))
        except Exception as err:  # noqa: BLE001 - a layer that cannot be run alone is said, the rest stands
            run.warnings.append(f"{state.label}: {a.words()} was not run: {err}")
            continue
        after = tried[-1].after
        if after.flips:  # a decision moved by it alone (the "the layer that alone breaks its decision")
            if after.ratio >= CARRIES * before.ratio or not math.isfinite(before.ratio):
                return r.probe
            breaking.append((-after.ratio, k, r.probe))
    return min(breaking)[2] if breaking else None
