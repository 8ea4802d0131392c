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


def test_a_cut_between_known_tensors_runs_alone_and_reproduces_its_target():
    """cut_segment + segment_model (local error's cut): the nodes from the known tensors to the target, Constant
    nodes copied in, typed from the whole graph's inferred types; run alone it gives the whole graph's value."""
    import numpy as np
    import onnx_graphsurgeon as gs

    from cp_debug.graph.plan import cut_segment, segment_model, tensor_types
    from cp_debug.graph.session import run_all_outputs, run_ort

    model = residual_model()
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    values = {"x": x, **run_all_outputs(gs.import_onnx(model), {"x": x})}
    cut = cut_segment(model, ["y"], {"a", "x"})
    assert cut.inputs == ("a",) and cut.outputs == ("y",)
    assert [model.graph.node[k].name for k in cut.nodes] == ["relu_b", "conv_c", "scale_c", "add_y"]
    seg = segment_model(model, cut, {"a": values["a"]}, tensor_types(model))
    assert "Constant" in [n.op_type for n in seg.graph.node]
    np.testing.assert_allclose(run_ort(seg, {"a": values["a"]})["y"], values["y"], rtol=1e-6, atol=1e-6)
    # nothing known but the graph input: the cut reaches back to it
    assert cut_segment(model, ["c"], set()).inputs == ("x",)


def test_cuts_run_side_by_side_give_each_cut_alone():
    """side_by_side (local error's sessions): cuts from their own boundaries joined in one model, every boundary read
    a `::cut` input, give in one ONNX Runtime run what each cut gives alone; cuts sharing a node, or past the byte
    budget, go to different groups."""
    import numpy as np
    import onnx_graphsurgeon as gs

    from cp_debug.graph.grouped import CUT_SUFFIX, side_by_side, side_by_side_groups
    from cp_debug.graph.plan import cut_segment, segment_model, tensor_types
    from cp_debug.graph.session import run_all_outputs, run_ort

    model = residual_model()
    x = np.random.default_rng(2).normal(size=(1, 4, 8, 8)).astype(np.float32)
    ref = {"x": x, **run_all_outputs(gs.import_onnx(model), {"x": x})}
    ref["a"] = ref["a"] + np.float32(0.25)  # boundary values that are not what the graph computes: reads are cut
    known = {"x", "a", "c"}
    cuts = [cut_segment(model, [t], known - {t}, index=k) for k, t in enumerate(("a", "c", "y"))]
    types = tensor_types(model)
    inits = {i.name: i for i in model.graph.initializer}
    sizes = {t: 256 for t in ("a", "c", "y")}
    (group,) = side_by_side_groups(cuts, sizes, 1 << 20)
    joined = side_by_side(model, group, {b: ref[b] for c in cuts for b in c.inputs}, types, inits, {})
    assert {i.name for i in joined.graph.input} == {"x" + CUT_SUFFIX, "a" + CUT_SUFFIX, "c" + CUT_SUFFIX}
    got = run_ort(joined, {b + CUT_SUFFIX: ref[b] for b in ("x", "a", "c")})
    for cut in cuts:
        (t,) = cut.outputs
        feed = {b: ref[b] for b in cut.inputs}
        alone = run_ort(segment_model(model, cut, feed, types), feed)
        np.testing.assert_array_equal(got[t], alone[t])
    assert not np.array_equal(got["y"], ref["y"])  # y = c + a read the fed (shifted) a, not the joined model's own
    # a cut reaching back over another's node, and the budget, split the groups
    deep = cut_segment(model, ["c"], {"x"}, index=3)
    assert [len(g) for g in side_by_side_groups([cuts[0], deep, cuts[2]], sizes, 1 << 20)] == [2, 1]
    assert [len(g) for g in side_by_side_groups(cuts, sizes, 512)] == [2, 1]
    # given the model, a node two cuts share that computes the same in both (conv_a from x) is run once for both;
    # one that reads a boundary in one cut and its own node's tensor in the other (relu_b's a) still splits them
    shared = [cuts[0], deep, cuts[2]]
    (group,) = side_by_side_groups(shared, sizes, 1 << 20, model)
    assert len(group) == 3
    joined = side_by_side(model, group, {b: ref[b] for c in shared for b in c.inputs}, types, inits, {})
    assert sum(n.name == "conv_a" for n in joined.graph.node) == 1
    got = run_ort(joined, {b + CUT_SUFFIX: ref[b] for b in ("x", "a", "c")})
    for cut in shared:
        feed = {b: ref[b] for b in cut.inputs}
        alone = run_ort(segment_model(model, cut, feed, types), feed)
        for t in cut.outputs:
            np.testing.assert_array_equal(got[t], alone[t])
    assert [len(g) for g in side_by_side_groups([cuts[1], deep], sizes, 1 << 20, model)] == [1, 1]
