"""The segment plan: cuts after each probe tensor, tensors kept alive across cuts, nearest upstream probes."""

from __future__ import annotations

from cp_debug.graph.plan import plan_segments
from tests.graph.models import residual_model


def test_plan_cuts_after_each_probe_and_keeps_skip_tensors_alive():
    plan = plan_segments(residual_model(), ["a", "c", "nowhere"])
    assert [s.probes for s in plan.segments] == [("a",), ("c",), ()]
    assert plan.segments[0].inputs == ("x",) and plan.segments[1].inputs == ("a",)
    assert set(plan.segments[2].inputs) == {"c", "a"} and plan.segments[2].outputs == ("y",)
    assert plan.last_use["a"] == 2 and plan.last_use["y"] == 3  # graph outputs live to the end
    assert plan.upstream == {"a": ("x",), "c": ("a",)}
    assert plan.missing == ("nowhere",)
