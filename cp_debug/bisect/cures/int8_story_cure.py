"""The cure ladder where INT8's story names the root cause (`int8_story.py`: a range that loses its values, no local
fault): the segment's own error is within INT8's budget there — the big channel dominates it — and the damage shows
downstream, so a rung is verified on the segment from the root cause on to the first divergent probe, judged there as
its local error is (issue 84, item 4: the smallest cure, verified, at every level). The same rungs as a local fault's
(`segment_int8.py`): the tensor at a range fitted to it, its readers left out of INT8, then with its writer.

tests/bisect's MobileNetV2 with one depthwise channel ×1000 (width 0.5): the conv's output quantized at ±0.287, 99% of
its nonzero values rounded to zero; before, the hint advised "exclude this layer from INT8 … or clip the outliers",
unverified.
"""

from __future__ import annotations

from cp_debug.bisect.run_state import CandidateState, RunState

def story_cure(run: RunState, state: CandidateState, probe: str, fd: str, tensor: str) -> str | None:
    """The ladder for `tensor` (the quantized tensor whose range loses its values, `probe`'s own or one inside its
    segment) on the segment from `probe`'s module on to `fd`, said with each rung's figure; None where it cannot be
    run (no segment, the tensor not quantized there)."""
    from cp_debug.bisect.cures.at_outputs import NONE_OFFERED, OutputsJudge, held
    from cp_debug.bisect.cures.int8_range_rung import RangeRung, range_rung, with_range
    from cp_debug.bisect.cures.ladder import climb, ladder_text, within
    from cp_debug.bisect.cures.ladder import named as _named
    from cp_debug.bisect.findings.segment_int8 import _range_finding
    from cp_debug.bisect.findings.segment_why import root_segment, run_segment
    from cp_debug.compare.diff import TensorDiff
    from cp_debug.precision.int8 import DEFAULT_OP_TYPES

    i = run.probes[probe].stage
    inner = [(p.pos, n) for n, p in run.probes.items()
             if p.stage == i and p.kind == "module" and n.startswith(probe + ".")]
    first = min(inner)[1] if inner else probe
    rs = root_segment(run, state, i, first, through=fd)
    if rs is None:
        return None
    seg, feed = rs.model, rs.feed
    cand = run_segment(run, str(rs.spec), seg, feed, [rs.tensor], spec=rs.spec)
    if tensor not in cand.amax or cand.qdq is None or rs.tensor not in cand.values:
        return None
    value = feed.get(tensor)
    if value is None:
        value = run_segment(run, "ort", seg, feed, [tensor], facts=False).values.get(tensor)
    nodes = [n for n in seg.graph.node if n.op_type in DEFAULT_OP_TYPES]
    readers = [n for n in nodes if tensor in n.input]
    writer = next((n for n in nodes if tensor in n.output), None)
    axis = 1 if any(n.op_type.startswith("Conv") for n in [*readers, *([writer] if writer else [])]) else -1
    found = _range_finding(tensor, value, float(cand.amax[tensor]), axis)
    rung = range_rung(found(()), value, axis) if found is not None else None
    sets = [s for s in (tuple(n.name for n in readers), tuple(n.name for n in [*readers, writer] if n)) if s]
    steps = [*([rung] if rung else []), *dict.fromkeys(sets)]
    if not steps:
        return None

    def values_of(step):
        if isinstance(step, RangeRung):
            return run_segment(run, str(rs.spec), seg, feed, [rs.tensor], spec=rs.spec, facts=False,
                               qdq=with_range(cand.qdq, step.tensor, step.amax)).values[rs.tensor]
        return run_segment(run, str(rs.spec), seg, feed, [rs.tensor], spec=rs.spec, exclude=step,
                           facts=False).values[rs.tensor]

    before = TensorDiff.from_arrays(fd, run.store.get(fd), cand.values[rs.tensor], run.tolerance(state, fd))
    if within(run, state, fd, before)[0]:  # the segment alone does not make the divergence: nothing to verify
        return None
    seen, worse, judged = [], [], {}
    k, last, after, ok, budget = climb(run, state, fd, steps, values_of, seen, OutputsJudge(run, state, i), worse,
                                       judged)
    # verified on the segment: what it does at the outputs closes the advice (`at_outputs.held`: back, or a step
    # toward the cure — tempocnn's fcn: its first conv left out passes the segment, 2 of 12 tempi stay moved)
    at = f"; {held(*judged[id(last)])}" if ok and id(last) in judged else ""
    by_name = {n.name: n for n in seg.graph.node}

    def said(s) -> str:
        return s.text() if isinstance(s, RangeRung) else _left_out(s, by_name, rs.named, _named)

    bad = {id(w.step): w for w in worse}  # within on the segment, worse at the outputs: tried, not offered
    tried = "; ".join(bad[id(s)].text(said(s)) if id(s) in bad else
                      f"{said(s)}: rel. RMSE {d.rel_rmse:.3g} at {fd}, not within" for s, d, _ in seen[:-1])
    if id(last) in bad:
        tried = "; ".join(x for x in (tried, bad[id(last)].text(said(last))) if x)
    where = (f"the cure ladder on the segment from {first} on to {fd}, the first divergent probe (weights are per "
             f"channel already{'; tried first: ' + tried if tried else ''})")
    if id(last) in bad:
        return f"{where}; {NONE_OFFERED}"
    if isinstance(last, RangeRung):
        return ladder_text(where, last.text(), "int8", before.rel_rmse, after.rel_rmse, budget, (), ok, k) + at + (
            f"; {last.how_to()}" if ok else "")
    return ladder_text(where, _left_out(last, by_name, rs.named, _named), "int8", before.rel_rmse, after.rel_rmse,
                       budget, last, ok, k) + at


def _left_out(names: tuple[str, ...], by_name: dict, named, said) -> str:
    return f"{', '.join(said(by_name[n], named) for n in names)} left out of INT8"
