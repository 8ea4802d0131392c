"""One fault in every layer, said as one (issue 115): a user's Q/DQ file whose pairs hold a scale that is no number
(inf, NaN, 0) at several places — a masked attention's -inf fill calibrated into each layer's scores (rxnfp's BERT,
`quantize_static`: 12 layers' masked-score pairs each with an inf scale, every attention 0).

Restored one probe at a time, no one of those pairs brings the outputs back (the others still zero their layers), and
the root the own-error ranking picks is one of them as if it alone were the fault. This *where* finding places the
root at the FIRST such pair in execution order, says the fault is one mechanism repeated, with the pairs' probes
(`Finding.repeated`: the fact the root cause and its JSON carry, `RootCause.same_fault`), and runs the set at the
outputs — every such pair's readers left out of the file's quantizer at once (`qdq_exclude.bad_scale_sets`'s last
rung), as the cure offered — for the intervention to confirm (`Finding.restores`).

A finite scale a mask's fill set is the same class of fault (`graph/masks.fill_scale`; rxnfp's dynamo export writes
the fill as finfo.min, -3.4e38: each layer's masked scores' pair has a scale of 1.33e36, every real score rounds to
the zero point, each attention uniform over its tokens). Compared through the fill, those probes read "ok" (their
error beside values of -3.4e38) and the Softmax after them too: the first divergent probe and the root land
downstream. Such pairs are placed where they run before the first divergent probe (or the root) and their set, left
out at once, brings the outputs measurably closer (`CLOSER`, or fewer decisions flipped): a fill the real scores'
rounding leaves harmless on the input (a tiny random BERT's near-uniform attention: the set 0.0371 → 0.0371) is not
placed."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment

SHOWN = 4  # the pairs' probes named in the words (all of them in the JSON)
CLOSER = 0.5  # a fill's pairs found upstream of the divergence: their set's worst output at most this × the file's


@dataclass(frozen=True)
class Repeated:
    """The pairs whose scale is no number, in execution order: their probes, the kind ("inf", "NaN", "0"), the
    nodes that read them (the set left out at once) and the name scopes they sit in."""

    probes: tuple[str, ...]
    kind: str
    readers: tuple[str, ...]
    scopes: int
    scale: float = float("nan")  # a fill's pairs: the largest scale among them

    def words(self) -> str:
        shown = ", ".join(self.probes[:SHOWN]) + (f", … {len(self.probes) - SHOWN} more" if len(self.probes) > SHOWN
                                                  else "")
        where = f", in {self.scopes} scopes" if self.scopes > 1 else ""
        if self.kind == "fill":
            from cp_debug.graph.masks import INT8_TOP

            each = (f"each pair's range was set by a mask's fill (a scale up to {self.scale:.3g} in the file: "
                    f"{INT8_TOP} steps reach {self.scale * INT8_TOP:.3g}), so every value a layer computes rounds to "
                    "its zero point and only the fill is kept")
        else:
            lost = "0" if self.kind == "0" else "NaN" if self.kind in ("inf", "NaN") else "NaN or 0"
            each = f"each pair's scale is {self.kind} in the file, so every value it dequantizes is {lost}"
        return (f"the same fault in {len(self.probes)} Q/DQ pairs{where} ({shown}): {each} — one mechanism "
                "repeated, no one pair the cause alone (the root is the first of them)")


def repeated(model, tensors: dict[str, str], order: dict[str, tuple]) -> Repeated | None:
    """The pairs of `model` (a deployed Q/DQ file) on an activation whose scale is no number, where there are two or
    more and a probe reads each (`tensors`: probe → the file's tensor; `order`: probe → its execution position)."""
    from cp_debug.precision.int8 import bad_scale_pairs

    by_tensor = {t: p for p, t in tensors.items()}
    found = []
    for pair in bad_scale_pairs(model):
        probe = next((by_tensor[d] for d in pair.dequantized if d in by_tensor), None)
        if probe is None or probe not in order:
            continue
        found.append((order[probe], probe, pair.kind, pair.readers, pair.scale))
    if len(found) < 2:
        return None
    found.sort(key=lambda f: f[0])
    kinds = {f[2] for f in found}
    readers = tuple(dict.fromkeys(r for f in found for r in f[3] if r))
    scopes = len({f[1].rsplit("/", 1)[0] if "/" in f[1] else "" for f in found})  # a name without one: none
    kind = found[0][2] if len(kinds) == 1 else "inf, NaN or 0"
    return Repeated(tuple(f[1] for f in found), kind, readers, scopes, max(f[4] for f in found))


@dataclass(frozen=True)
class SameFault:
    """A user's Q/DQ file whose scales are no number at several pairs, the ranked root or the first divergent probe
    one of them: the root placed at the first, the set run at the outputs (module docstring)."""

    fault: str = "same fault"
    role: Role = Role.WHERE

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.own_files and c.precision in ("int8", "fp8") and c.spec.runs_onnx

    def examine(self, seg: Segment) -> Finding | None:
        run, state = seg.run, seg.state
        p = run.probes.get(seg.root) if seg.root else None
        if p is None:
            return None
        st = run.stage_of(state.label, p.stage)
        pm = st.probe_map()
        if pm is None:
            return None
        order = {n: (q.stage, q.pos) for n, q in run.probes.items() if q.stage == p.stage}
        found = repeated(st.onnx(), pm.tensors, order)
        if found is None:
            return None
        at = bool({seg.root, seg.first_divergent} & set(found.probes))
        if not at and not (found.kind == "fill" and _upstream(order[found.probes[0]], order, seg)):
            return None
        from cp_debug.bisect.cures.restore import EXCLUDE, Restoration, measured, quantized_as

        r = Restoration(found.probes[0], p.stage, EXCLUDE, nodes=found.readers, in_file=True,
                        source=f"the readers of the {len(found.probes)} pairs", fmt=quantized_as(state))
        err = measured(run, state, p.stage, [r])
        was = getattr(state.intervention, "before", None)
        closer = was is not None and (err.ratio <= CLOSER * was.ratio or err.flips < was.flips)
        if not at and not closer:  # a fill's pairs whose set does not bring the outputs closer (the file's within
            return None  # their budget already, or a fill harmless on this input): not this fault's place
        return Finding(self.fault, self.role, found.probes[0], found.words(), float(len(found.probes)),
                       outcome=_diverged(found, was, err) if found.kind == "fill" and closer else None,
                       detail=found, restores=((r, err),), measured=err.back, repeated=found.probes)


def _diverged(found: Repeated, was, err) -> tuple | None:
    """A fill's pairs are a local fault their comparison cannot show (each probe's error read beside the fill, its
    reader's amplified by it): the outcome diverged where the file's outputs are beyond their budget or flip a
    decision, with the figures of the set left out (NaN and inf pairs are diverged by their own probes)."""
    from cp_debug.compare.noise import Outcome

    if was is None or not (was.ratio > 1 or was.flips):
        return None
    flips = f", {was.flips} → {err.flips} decision(s) flipped" if was.flips else ""
    return Outcome.DIVERGED, (f"local fault at the {len(found.probes)} Q/DQ pairs a mask's fill set ({found.probes[0]}"
                              f"{', …' if len(found.probes) > 1 else ''}): left out at once, the worst output "
                              f"{was.ratio:.3g}× → {err.ratio:.3g}× its budget{flips}")


def _upstream(first: tuple, order: dict[str, tuple], seg: Segment) -> bool:
    """Whether the pair at execution position `first` runs before the first divergent probe or the root (those of
    its stage): a fault the comparison read through its fill, placed before the divergence it caused."""
    later = [order[x] for x in (seg.first_divergent, seg.root) if x in order]
    return bool(later) and first < min(later)
