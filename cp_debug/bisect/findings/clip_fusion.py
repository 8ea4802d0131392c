"""ONNX Runtime's ClipQuantFusion as the INT8 why of a root cause's segment (issue 84, item 4): the rewrite rule drops
a Clip in front of a QuantizeLinear whose int8 range it takes to lie within the Clip's bounds, comparing them within
float32's epsilon in absolute terms; where the quantizer's low bound lies below the Clip's minimum by less than that
(a ReLU6 whose activations are ~1e-8: a random-init or badly scaled layer, int8 range ±1.9e-8), the Clip goes and its
negatives pass. A random-init torchvision MobileNetV2 (width 1.0, 96×96) has three such ReLU6: its block verdict was
"diverged" at features.17.conv, 8.1× INT8's budget in its segment alone, said as "INT8 quantisation error of this
layer" while only the precision notes named the rule (`precision.int8.clips_ort_drops`).

Here the segment, quantized as the candidate quantizes it, is run again with the rule left out of the session
(InferenceSession's `disabled_optimizers`; ONNX Runtime names the rule "ClipQuantRewrite", and onnxruntime 1.32 leaves
the Clip in place only under that name: "ClipQuantFusion", its class's name, changes nothing) and judged by the run's
own judge (`segment_int8.climb`): "verified" only where the segment's local error comes back within INT8's budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.bisect.cures.ladder import climb, ladder_text
from cp_debug.bisect.cures.ladder import named as _named
from cp_debug.bisect.findings.segment_why import RootSegment, SegmentRun, root_segment, run_segment
from cp_debug.compare.diff import TensorDiff
from cp_debug.precision.int8 import FLOAT32_EPS

RULE = "ClipQuantRewrite"  # ClipQuantFusion among ONNX Runtime's rewrite rules: the name disabled_optimizers takes


@dataclass(frozen=True)
class ClipFusionWhy:
    clips: tuple[tuple[str, float, float], ...]  # "module: Clip 'name'", its quantizer's low bound, the Clip's minimum
    verified: bool
    before: float  # the segment's local rel. RMSE as the candidate runs it (the Clip dropped)
    after: float  # ... with the rule left out of the session
    budget: float | None  # INT8's budget there (None with --tolerance-mode fixed)

    def text(self) -> str:
        name, q_lo, lo = self.clips[0]
        more = f" (and {len(self.clips) - 1} more Clip(s) of this segment)" if len(self.clips) > 1 else ""
        why = (f"ONNX Runtime's ClipQuantFusion drops {name}{more} in front of its QuantizeLinear: the quantizer's "
               f"int8 range reaches {q_lo:.3g}, below the Clip's minimum {lo:g} by less than float32's epsilon "
               f"({FLOAT32_EPS:.3g}, which the rule compares in absolute terms), so the Clip goes and its negatives "
               "pass — ONNX Runtime's optimiser, not INT8's rounding")
        change = f"the rule left out of the session (InferenceSession(..., disabled_optimizers=[{RULE!r}]))"
        return ladder_text(why, change, "int8", self.before, self.after, self.budget, (), self.verified, 1)


def clip_fusion_why(run: RunState, state: CandidateState, rs: RootSegment, probe: str,
                    cand: SegmentRun) -> ClipFusionWhy | None:
    """The ClipQuantFusion why of `probe`'s segment (`rs`, run as the candidate runs it: `cand`), with the segment run
    again with the rule off and judged as its local error is; None where the segment holds no Clip the rule drops."""
    if not cand.clips or rs.tensor not in cand.values:
        return None
    truth = run.store.get(probe)
    before = TensorDiff.from_arrays(probe, truth, cand.values[rs.tensor], run.tolerance(state, probe))
    off = replace(run.det, ort_disabled_optimizers=tuple(dict.fromkeys([*run.det.ort_disabled_optimizers, RULE])))
    _, _, after, ok, budget = climb(run, state, probe, [off], lambda det: run_segment(
        run, str(rs.spec), rs.model, rs.feed, [rs.tensor], spec=rs.spec, det=det, facts=False).values[rs.tensor])
    by_name = {n.name: n for n in rs.model.graph.node}
    clips = tuple((_named(by_name[c], rs.named) if c in by_name else repr(c), q_lo, lo)
                  for c, (q_lo, lo) in cand.clips.items())
    return ClipFusionWhy(clips, ok, before.rel_rmse, after.rel_rmse, budget)


def module_clip_why(run: RunState, state: CandidateState, i: int, probe: str) -> ClipFusionWhy | None:
    """`clip_fusion_why` on the segment of `probe`'s whole module — from the tensors known before its first inner
    probe on to its own (a block's convs and ReLU6 inside it, as its local error was measured before the probes inside
    were refined) — where the candidate's graph holds a Clip the rule drops; None elsewhere."""
    if not any((s.get("precision_transform") or {}).get("clips_ort_drops") for s in state.settings.values()):
        return None
    inner = [(p.pos, n) for n, p in run.probes.items()
             if p.stage == i and p.kind == "module" and n.startswith(probe + ".")]
    rs = root_segment(run, state, i, min(inner)[1], through=probe) if inner else root_segment(run, state, i, probe)
    if rs is None:
        return None
    cand = run_segment(run, str(rs.spec), rs.model, rs.feed, [rs.tensor], spec=rs.spec, facts=False)
    return clip_fusion_why(run, state, rs, probe, cand)
