"""The lockstep in groups of segments: the values of `lockstep.py` from a few sessions per stage.

`--lockstep-mode grouped` (and `auto`, the default, on plans of `GROUPED_FROM_SEGMENTS` segments and more): fewer
sessions than the segment lockstep (one per segment and side), more memory.
Measured on the H100 (awml-base, `--level all`, ort-cuda,ort-cuda-fp16): 94.7 s and 13.2 GB peak host RSS in
7 groups against 87.7 s and 4.7 GB for the segment lockstep — session building was not what bounds the run
there, so the segments stay the default. Consecutive segments are grouped (`cp_debug.graph.grouped`) while the
tensors a group exposes fit `budget_bytes`, and per group:
- the reference runs the group's model (every member's probes and inner cut tensors as outputs), once — and
  once more on its own second chain for the noise floor, where a probe asks for it;
- each candidate runs the same model on its own values (propagated error), and the group with its inner cuts
  opened on the reference's values (local error: every member alone on the reference's boundary, one run).
FP16 candidates' values are rounded to float16 where they cross a cut, as in `lockstep.py`; tensors are dropped
once no later group reads them. Memory: about three times a group's tensors per candidate, on top of what
crosses the group's boundary. INT8 lanes (calibrated per segment) keep the segment lockstep.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import onnx

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.stages.lane_values import all_shared, as_stored, share_if_identical
from cp_debug.bisect.stages.lockstep import Lane, Lockstep
from cp_debug.graph import grouped as gg
from cp_debug.graph.plan import Segment, SegmentPlan, segment_model

DEFAULT_GROUP_BYTES = 1 << 30


# `--lockstep-mode auto` groups a plan of this many segments: there sessions are most of the cost (DenseNet-121's
# 1,746 one-node segments on the 2-core CPU machine: 26.7 s by segments, 16.4 s grouped, before this stop's work)
GROUPED_FROM_SEGMENTS = 200


def grouped_supported(lanes: Sequence[Lane]) -> bool:
    return not any(lane.spec.precision == "int8" for lane in lanes)


def use_groups(mode: str, plan: SegmentPlan, lanes: Sequence[Lane]) -> bool:
    """Whether the lockstep runs in groups: asked for ('grouped'), or 'auto' on a plan of many segments; never for
    INT8 lanes (calibrated per segment)."""
    if not grouped_supported(lanes):
        return False
    return mode == "grouped" or (mode == "auto" and len(plan.segments) >= GROUPED_FROM_SEGMENTS)


class GroupedLockstep(Lockstep):
    """`Lockstep` over groups of segments (see the module docstring); `plan` stays the segment plan."""

    UNITS = "segment groups"

    def __init__(self, model: onnx.ModelProto, plan: SegmentPlan, reference: BackendSpec, lanes: list[Lane], *,
                 determinism, noise: bool, local: bool, progress=None, stop_after_probes: bool = False,
                 budget_bytes: int = DEFAULT_GROUP_BYTES):
        super().__init__(model, plan, reference, lanes, determinism=determinism, noise=noise, local=local,
                         progress=progress, stop_after_probes=stop_after_probes)
        self.budget_bytes = budget_bytes
        self.groups: list[list] = []

    def _schedule(self, ref_env: dict) -> tuple[list[Segment], dict[str, int]]:
        """Groups as merged segments, and each tensor's last reading group."""
        types = gg.static_types(self.model, gg.shapes_of(ref_env))
        self.groups = self._split_unopenable(gg.group_segments(self.plan, types, self.budget_bytes))
        group_of = {s.index: gi for gi, members in enumerate(self.groups) for s in members}
        last_use = {t: group_of.get(s, len(self.groups)) for t, s in self.plan.last_use.items()}
        return [gg.merge_segments(self.model, members, gi) for gi, members in enumerate(self.groups)], last_use

    def _native_half(self, lane: Lane) -> bool:
        return False  # groups round at their cuts (`as_stored`): one model serves the propagated and local runs

    def _run_unit(self, k: int, seg: Segment, ref_env: dict, noise_env: dict | None, on_probe) -> None:
        self._group(self.groups[k], seg, ref_env, noise_env, on_probe)

    def _split_unopenable(self, groups: list[list]) -> list[list]:
        """Groups whose inner cuts a subgraph reads run their segments one by one (rare: If/Loop bodies)."""
        out = []
        for g in groups:
            out += [g] if gg.cuts_openable(self.model, g) else [[s] for s in g]
        return out

    def _group(self, members: list, seg, ref_env: dict, noise_env: dict | None, on_probe) -> None:
        ref_in = {t: ref_env[t] for t in seg.inputs}
        model = segment_model(self.model, seg, ref_in, self.types, self._inits)
        cuts = gg.inner_cuts(self.model, members)
        with self._runner(self.reference, model, {}, None, facts=False) as ref_runner:
            ref_out = ref_runner.infer(ref_in)
            ref_env.update(ref_out)
            local: dict[str, dict | None] = {}
            opened = None
            for lane in self.lanes:
                t0 = time.perf_counter()
                kept = self.kept.get(lane.label, frozenset())  # kept nodes' outputs cross cuts in float32
                lane_in = {t: lane.env[t] for t in seg.inputs}
                with self._runner(lane.spec, self._model_for(model, seg, lane_in, ref_in), lane.runner_kwargs,
                                  None) as r:
                    # the reference's own arrays (the stage's inputs) are float32: an FP16 graph reads them in
                    # float16, as the segment lockstep's float16 segments do
                    feed = ({t: (as_stored(lane.spec, {t: v}, copy=True, kept=kept)[t] if v is ref_in[t] else v)
                             for t, v in lane_in.items()} if lane.spec.device == "cpu" else lane_in)
                    out = {t: share_if_identical(v, ref_out[t])
                           for t, v in as_stored(lane.spec, r.infer(feed), kept=kept).items()}
                    self._record(lane, r)
                same = all_shared(lane_in, ref_in) and all(out[t] is ref_out[t] for t in cuts)
                local[lane.label] = None
                if self.local and not same:
                    if opened is None:
                        opened = gg.open_cuts(model, self.model, members, gg.shapes_of({t: ref_out[t] for t in cuts}))
                    feed = {**as_stored(lane.spec, ref_in, copy=True, kept=kept),
                            **{t + gg.CUT_SUFFIX: v for t, v in
                               as_stored(lane.spec, {t: ref_out[t] for t in cuts}, copy=True, kept=kept).items()}}
                    with self._runner(lane.spec, opened, lane.runner_kwargs, None) as r:  # facts: the deployed model's
                        local[lane.label] = as_stored(lane.spec, r.infer(feed), kept=kept)
                lane.env.update(out)
                lane.seconds += time.perf_counter() - t0
            self._hand_over(seg, ref_out, local, ref_runner, noise_env, on_probe)
