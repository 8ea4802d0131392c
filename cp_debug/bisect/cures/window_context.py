"""What a bug report needs from a finished run to grow a window upstream of a divergent probe.

`window_context` gives, for one candidate and one probe (the first divergent), the stage and its ONNX tensor,
the reference's value there, the cut points upstream of it whose reference values the run can give (the probe
tensors, in execution order), those values, the tensors whose values the bisect rounded to float16 (lockstep
FP16: every value crossing a cut), and the candidate's own stage inputs. The search itself lives with the bug
report (`cp_debug.bugreport.grow`); nothing here runs a candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cp_debug.bisect.run_state import RunState


@dataclass(frozen=True)
class WindowContext:
    label: str  # the candidate
    probe: str  # the probe the window ends at
    stage: int
    target: str  # its ONNX tensor: the window's output
    reference: np.ndarray  # the reference's value of `target`
    cuts: tuple[tuple[str, str], ...]  # (probe name, tensor) upstream of target, in execution order
    values: Callable[[list[str]], dict[str, np.ndarray]]  # reference values of cut tensors / stage inputs
    stage_inputs: tuple[str, ...]
    candidate_inputs: dict[str, np.ndarray]  # the candidate's own stage inputs (its upstream outputs, glued)
    rounded: tuple[str, ...] = ()  # tensors the bisect held in float16 (lockstep FP16), empty otherwise
    exposed: tuple[str, ...] = ()  # tensors exposed as outputs in the whole-stage run that measured `probe`
    lockstep: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def window_context(rs: RunState, label: str, probe: str) -> WindowContext | None:
    """The context for a window ending at `probe`'s tensor; None where the probe has no ONNX tensor. A glued
    input row stands for the earlier output it is glued from."""
    p = rs.probes.get(probe)
    if p is None:
        return None
    notes: list[str] = []
    if p.kind == "input":
        sources = rs.glue_sources(probe)
        if not sources:
            return None
        notes.append(f"{probe} is a stage input glued from {sources[0]}: the window ends there")
        probe, p = sources[0], rs.probes[sources[0]]
    st = rs.subject.stages[p.stage]
    pm = st.probe_map()
    target = probe if p.kind == "output" else (pm.tensors.get(probe) if pm else None)
    if target is None:
        return None
    state = rs.states[label]
    model = st.onnx()
    ref_feed = rs.ref_feeds[p.stage]
    inputs = tuple(st.input_names)
    if probe in rs.lockstep_runs:
        _, ls = rs.lockstep_runs[probe]
        names = _names_by_tensor(rs, p.stage)
        order = [t for seg in ls.plan.segments for t in seg.probes]
        tensors = [t for t in order if t != target]

        def values(wanted: list[str]) -> dict[str, np.ndarray]:
            return ls.reference_values(ref_feed, list(wanted))

        rounded = tuple(dict.fromkeys(t for seg in ls.plan.segments for t in seg.outputs)) \
            if state.spec.precision == "fp16" else ()
        exposed = ()
        reference = np.asarray(values([target])[target])
    else:
        known = rs.known_tensors(p.stage)
        names = {t: k for t, k in known.items()}
        position = _positions(model)
        tensors = sorted((t for t in known if t not in inputs and t != target and t in position),
                         key=position.__getitem__)

        def values(wanted: list[str]) -> dict[str, np.ndarray]:
            return {t: np.asarray(rs.known_value(p.stage, known[t])) for t in wanted}

        rounded = ()
        exposed = rs.exposed.get(probe, ())
        reference = np.asarray(rs.store.get(probe)) if probe in rs.store else None
        if reference is None:
            return None
    upstream = ancestors(model, target)
    cuts = tuple((names.get(t, t), t) for t in tensors if t in upstream)
    return WindowContext(label, probe, p.stage, target, reference, cuts, values, inputs,
                         dict(state.feeds.get(p.stage, {})), rounded, exposed, probe in rs.lockstep_runs,
                         tuple(notes))


def _names_by_tensor(rs: RunState, stage: int) -> dict[str, str]:
    pm = rs.subject.stages[stage].probe_map()
    out: dict[str, str] = {}
    for name, ps in rs.probes.items():
        if ps.stage != stage:
            continue
        t = name if ps.kind == "output" else (pm.tensors.get(name) if pm else None)
        if t is not None:
            out.setdefault(t, name)
    return out


def _positions(model) -> dict[str, int]:
    return {t: k for k, n in enumerate(model.graph.node) for t in n.output if t}


def ancestors(model, target: str) -> set[str]:
    """Every tensor `target` depends on (through any path)."""
    producer = {t: n for n in model.graph.node for t in n.output if t}
    seen: set[str] = set()
    stack = [target]
    while stack:
        t = stack.pop()
        node = producer.get(t)
        if node is None:
            continue
        for i in node.input:
            if i and i not in seen:
                seen.add(i)
                stack.append(i)
    return seen
