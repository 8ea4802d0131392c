"""The root cause is the module whose own code holds the op its reason names (issue 108, item 2).

The segment ending at a probe holds the code run before it too: a parent's between its children (a hand-written
attention's QK^T before its o_proj), a sibling's whose output was no probe (HF DETR's self_attn before the LayerNorm
after it, Whisper's before its final LayerNorm). The op-level why (`segment_why.py`) names the module that holds the
op; the root cause moves there wherever that module's output is a probe or can be one (its output mapped to the
graph, or a torch side's module), measured then if it was not, so that the root probe, its path, the JSON and the
summary name one module. Where it cannot be (no tensor of its own in the graph: Llama's attention hands up o_proj's
own tensor), or the module runs after the probe (a Conv folded into the BatchNorm after it takes the BatchNorm's
name), the probe stays and `RootCause.module` names the module. A decision placed as the root cause (a saturated
softmax or a near tie, `flip_why.py`; an index flip, `index_why.py`) keeps its probe — every probe computed from the
choice reads its other one — and names the module whose own code makes the choice the same way (issue 115: Whisper's
QK^T softmax was "root cause out_proj — saturated softmax flip at self_attn", now "self_attn (its own code, before
out_proj)").
"""

from __future__ import annotations

from typing import Callable

from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState
from cp_debug.sites import module_of_probe


def owner(probe: str, why) -> str | None:
    """The module whose own code holds the op `why` names (a segment's why: its finding's; a decision's or an index
    flip's: its own), where that is not `probe`'s module nor inside it."""
    module = getattr(getattr(why, "finding", None), "module", None) or getattr(why, "module", None)
    if not module:
        return None
    module, base = module_of_probe(module), module_of_probe(probe)
    return None if module == base or module.startswith(base + ".") else module


def moved(run: RunState, state: CandidateState, probe: str, module: str, path: list[str],
          measure: Callable | None) -> tuple[str, list[str]] | None:
    """(the owner's probe, the path to it) where `module`'s output is or can be a probe of `probe`'s stage (measured
    now through `measure(stage, [spec], state)` where it was not); None where it cannot."""
    p = run.probes.get(probe)
    if p is None or p.kind != "module":
        return None
    st = run.stage_of(state.label, p.stage)
    tr = st.trace()
    if tr is None:
        return None
    names = [n for n in tr.order if module_of_probe(n) == module]
    at = {n: k for k, n in enumerate(tr.order)}
    if not _holds(module, probe) and names and probe in at and at[names[0]] > at[probe]:
        return None  # a module run after the probe holds none of its segment's code: a folded Conv named at its BN
    mapped_only = state.spec.runs_onnx or run.ref_spec.runs_onnx
    pm = st.probe_map() if mapped_only else None
    found = next((n for n in names if _compared(state, n)), None)
    if found is None:
        found = next((n for n in names if n not in state.results and (pm is None or n in pm.tensors)), None)
        if found is None or measure is None:
            return None
        above = [q for q in path if _holds(q, module)]
        parent = above[-1] if above else None
        depth = run.probes[parent].depth + 1 if parent in run.probes else 0
        spec = run.probes.setdefault(found, ProbeSpec(found, p.stage, "module", float(tr.order.index(found)),
                                                      parent=parent, depth=depth))
        measure(p.stage, [spec], state)
        if not _compared(state, found):
            return None
    return found, [*[q for q in path if _holds(q, module) and q != found], found]


def _holds(probe: str, module: str) -> bool:
    """`probe`'s module is `module`'s or an ancestor of it (`_holds(module, probe)`: `module` holds the probe)."""
    base = module_of_probe(probe)
    return module == base or module.startswith(base + ".")


def _compared(state: CandidateState, name: str) -> bool:
    r = state.results.get(name)
    return r is not None and r.status != "missing"
