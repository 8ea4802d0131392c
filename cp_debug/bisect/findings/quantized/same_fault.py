"""One fault in every layer, said as one (issue 115): a user's Q/DQ file whose pairs hold a scale that is no number
(inf, NaN, 0) at several places — a masked attention's -inf fill calibrated into each layer's scores (rxnfp's BERT,
`quantize_static`: 12 layers' masked-score pairs each with an inf scale, every attention 0).

Restored one probe at a time, no one of those pairs brings the outputs back (the others still zero their layers), and
the root the own-error ranking picks is one of them as if it alone were the fault. This *where* finding places the
root at the FIRST such pair in execution order, says the fault is one mechanism repeated, with the pairs' probes
(`Finding.repeated`: the fact the root cause and its JSON carry, `RootCause.same_fault`), and runs the set at the
outputs — every such pair's readers left out of the file's quantizer at once (`qdq_exclude.bad_scale_sets`'s last
rung), as the cure offered — for the intervention to confirm (`Finding.restores`)."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment

SHOWN = 4  # the pairs' probes named in the words (all of them in the JSON)


@dataclass(frozen=True)
class Repeated:
    """The pairs whose scale is no number, in execution order: their probes, the kind ("inf", "NaN", "0"), the
    nodes that read them (the set left out at once) and the name scopes they sit in."""

    probes: tuple[str, ...]
    kind: str
    readers: tuple[str, ...]
    scopes: int

    def words(self) -> str:
        shown = ", ".join(self.probes[:SHOWN]) + (f", … {len(self.probes) - SHOWN} more" if len(self.probes) > SHOWN
                                                  else "")
        where = f", in {self.scopes} scopes" if self.scopes > 1 else ""
        lost = "0" if self.kind == "0" else "NaN" if self.kind in ("inf", "NaN") else "NaN or 0"
        return (f"the same fault in {len(self.probes)} Q/DQ pairs{where} ({shown}): each pair's scale is "
                f"{self.kind} in the file, so every value it dequantizes is {lost} — one mechanism repeated, no one "
                "pair the cause alone (the root is the first of them)")


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
        found.append((order[probe], probe, pair.kind, pair.readers))
    if len(found) < 2:
        return None
    found.sort(key=lambda f: f[0])
    kinds = {f[2] for f in found}
    readers = tuple(dict.fromkeys(r for f in found for r in f[3] if r))
    scopes = len({p.rsplit("/", 1)[0] if "/" in p else "" for _, p, _, _ in found})  # a name without one: none
    return Repeated(tuple(f[1] for f in found), found[0][2] if len(kinds) == 1 else "inf, NaN or 0", readers, scopes)


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
        if found is None or not {seg.root, seg.first_divergent} & set(found.probes):
            return None
        from cp_debug.bisect.cures.restore import EXCLUDE, Restoration, measured, quantized_as

        r = Restoration(found.probes[0], p.stage, EXCLUDE, nodes=found.readers, in_file=True,
                        source=f"the readers of the {len(found.probes)} pairs", fmt=quantized_as(state))
        err = measured(run, state, p.stage, [r])
        return Finding(self.fault, self.role, found.probes[0], found.words(), float(len(found.probes)),
                       detail=found, restores=((r, err),), measured=err.back, repeated=found.probes)
