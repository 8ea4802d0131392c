"""Another exporter's file of the same computation (issue 107 item 3): a Linear's `Add(bias, MatMul)` against
`Add(MatMul, bias)`, a weight read through an Identity, shape arithmetic written otherwise — paired, or counted as
the exporter's form, never a change of the computation."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from cp_debug.probes.foreign import _Graph
from cp_debug.probes.node_pairs import align_nodes
from cp_debug.probes.graph_diff import unmatched_nodes
from cp_debug.probes.naming import ProbeMap

W = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
B = numpy_helper.from_array(np.zeros(4, np.float32), "b")


def _model(nodes, inits):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_a_linear_written_bias_first_pairs_with_one_written_bias_last_and_forms_are_not_changes():
    """Two Linears read the input (its consumers alone cannot tell them apart): only the inputs of the paired `Mul`
    and `Add`, read by what makes them rather than by slot, reach them."""
    ours = _model([helper.make_node("MatMul", ["x", "w"], ["mm1"], name="node_MatMul_1"),
                   helper.make_node("Add", ["mm1", "b"], ["lin1"], name="node_Add_2"),
                   helper.make_node("MatMul", ["x", "w"], ["mm2"], name="node_MatMul_3"),
                   helper.make_node("Add", ["mm2", "b"], ["lin2"], name="node_Add_4"),
                   helper.make_node("Relu", ["lin2"], ["act"], name="node_Relu_5"),
                   helper.make_node("Mul", ["lin1", "act"], ["y"], name="node_Mul_6")], [W, B])
    theirs = _model([helper.make_node("Identity", ["w"], ["w_shared"], name="Identity_7"),  # TorchScript's
                     helper.make_node("Shape", ["x"], ["shape"], name="/Shape"),  # shape arithmetic of its own
                     helper.make_node("MatMul", ["x", "w_shared"], ["a_mm"], name="/a/MatMul"),
                     helper.make_node("Add", ["b", "a_mm"], ["a_out"], name="/a/Add"),
                     helper.make_node("MatMul", ["x", "w_shared"], ["g_mm"], name="/g/MatMul"),
                     helper.make_node("Add", ["b", "g_mm"], ["g_out"], name="/g/Add"),
                     helper.make_node("Relu", ["g_out"], ["g_act"], name="/g/Relu"),
                     helper.make_node("Mul", ["g_act", "a_out"], ["y"], name="/Mul")], [W, B])
    a, b = _Graph.of(ours), _Graph.of(theirs)
    pairs = align_nodes(a, b, {})  # grown from the output alone
    assert pairs == {5: 7, 0: 2, 1: 3, 2: 4, 3: 5, 4: 6}
    left = unmatched_nodes(theirs, sorted(set(range(8)) - set(pairs.values())), ProbeMap({}, {}, {}, {}),
                           "candidate", "model")
    assert [(n.op_type, n.computes, n.form) for n in left] == [("Identity", False, True), ("Shape", False, True)]


def test_twins_between_the_same_probes_and_a_modules_own_rewrite_are_no_difference_but_an_inserted_op_is():
    from cp_debug.probes.graph_diff import UnmatchedNode, without_twins

    def node(name, op, side, before, after, module=None):
        return UnmatchedNode(name, op, side, "model", before, after, (f"{name}_out",), module=module)

    theirs = (node("/act/Mul_1", "Mul", "candidate", "fc1", "act", "act"),  # a GELU's ops, TorchScript's way
              node("/act/Erf", "Erf", "candidate", "fc1", "act", "act"),
              node("/fc2/MatMul", "MatMul", "candidate", "act", "fc2", "fc2"),  # unreached past it
              node("/head/Clip", "Clip", "candidate", "fc2", "head", "head"))  # a clamp the user's edit added
    ours = (node("node_Gelu_4", "Gelu", "reference", "fc1", "act", "act"),
            node("node_MatMul_5", "MatMul", "reference", "act", "fc2", "fc2"))
    ours += (node("node_Reshape_9", "Reshape", "reference", "key", "attn", "attn"),  # a layout of its own, in a module
             node("node_Transpose_2", "Transpose", "reference", "input", "fc1"))  # one the user put before any module
    left = without_twins(theirs, ours)
    assert [n.node for n in left.only_in_candidate] == ["/head/Clip"]
    assert [n.node for n in left.only_in_reference] == ["node_Transpose_2"]


def _unpaired(ours, theirs):
    """(candidate `theirs`, reference `ours`) unpaired nodes as `without_twins` takes them, no probes inside."""
    from cp_debug.probes.graph_diff import without_twins

    a, b = _Graph.of(ours), _Graph.of(theirs)
    pairs = align_nodes(a, b, {})
    empty = ProbeMap({}, {}, {}, {})
    cand = unmatched_nodes(b.model, sorted(set(range(len(b.model.graph.node))) - set(pairs.values())), empty,
                           "candidate", "model")
    ref = unmatched_nodes(a.model, sorted(set(range(len(a.model.graph.node))) - set(pairs)), empty, "reference",
                          "model")
    return without_twins(cand, ref, fused=(ours, theirs))


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.float32)))


def test_fused_and_unfused_forms_of_one_function_are_one_computation():
    """Issue 117 item 4: a file with GELU as one `Gelu` op (what ONNX Runtime's optimizer and many converters write),
    LayerNormalization and Softmax fused, against the reference's Div/Erf/Add/Mul, ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add
    and Exp/ReduceSum/Div: no graph difference; a Clip only the file has stays one."""
    ours = _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                   _const("sqrt2", 1.4142135), _const("one", 1.0), _const("half", 0.5), _const("eps", 1e-5),
                   _const("two", 2.0),
                   helper.make_node("Div", ["h", "sqrt2"], ["d"], name="gelu/Div"),
                   helper.make_node("Erf", ["d"], ["e"], name="gelu/Erf"),
                   helper.make_node("Add", ["e", "one"], ["e1"], name="gelu/Add"),
                   helper.make_node("Mul", ["h", "e1"], ["m"], name="gelu/Mul"),
                   helper.make_node("Mul", ["m", "half"], ["g"], name="gelu/Mul_1"),
                   helper.make_node("ReduceMean", ["g"], ["mu"], axes=[-1], name="ln/ReduceMean"),
                   helper.make_node("Sub", ["g", "mu"], ["c"], name="ln/Sub"),
                   helper.make_node("Pow", ["c", "two"], ["c2"], name="ln/Pow"),
                   helper.make_node("ReduceMean", ["c2"], ["var"], axes=[-1], name="ln/ReduceMean_1"),
                   helper.make_node("Add", ["var", "eps"], ["ve"], name="ln/Add"),
                   helper.make_node("Sqrt", ["ve"], ["sd"], name="ln/Sqrt"),
                   helper.make_node("Div", ["c", "sd"], ["n"], name="ln/Div"),
                   helper.make_node("Exp", ["n"], ["ex"], name="sm/Exp"),
                   helper.make_node("ReduceSum", ["ex"], ["se"], keepdims=1, name="sm/ReduceSum"),
                   helper.make_node("Div", ["ex", "se"], ["y"], name="sm/Div")], [W, B])
    theirs = _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="/mm/MatMul"),
                     helper.make_node("Gelu", ["h"], ["g"], name="/gelu/Gelu", domain="com.microsoft"),
                     helper.make_node("LayerNormalization", ["g", "b", "b"], ["n"], name="/ln/LayerNorm", axis=-1),
                     helper.make_node("Softmax", ["n"], ["y"], name="/sm/Softmax", axis=-1)], [W, B])
    diff = _unpaired(ours, theirs)
    assert diff.computation == (), diff.summary()
    clipped = _model([*theirs.graph.node[:1], helper.make_node("Clip", ["h"], ["hc"], name="/clip"),
                      helper.make_node("Gelu", ["hc"], ["g"], name="/gelu/Gelu", domain="com.microsoft"),
                      *theirs.graph.node[2:]], [W, B])
    diff = _unpaired(ours, clipped)
    assert [n.op_type for n in diff.computation] == ["Clip"], diff.summary()
