"""The screen finds a tensor that collapses to all zeros behind a residual (issue 84, item 1): before, the default
level read "within precision" (the block's output carries the residual); now the collapsed module is measured and
named with FP16's underflow, the healthy twin stays within precision."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("collapse_models.py")


def test_a_branch_collapsed_to_zero_behind_a_residual_is_found(tmp_path):
    proc = cpdebug("bisect", "--torch", f"{MODELS}:collapsed", "-b", "torch,ort-cpu-fp16", "--json",
                   tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    cause = report["root_cause"]["ort-cpu-fp16"]
    assert cause["probe"].startswith("1.inner.tiny"), cause
    assert cause["hint"].startswith("FP16 underflow: values here are tiny"), cause
    said = [w for w in report["warnings"] if "collapses to all zeros" in w]
    assert said and "1.inner.tiny" in said[0], report["warnings"]


def test_the_healthy_twin_stays_within_precision(tmp_path):
    proc = cpdebug("bisect", "--torch", f"{MODELS}:healthy", "-b", "torch,ort-cpu-fp16", "--json",
                   tmp_path / "r.json", env={"CPDEBUG_CACHE_DIR": str(tmp_path / "cache")})
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0 and not [w for w in report["warnings"] if "collapses" in w], report["warnings"]
    # the screen's own runs are a step of the progress (on a CPU, a long one: it builds and runs a screened graph)
    assert "✓ ort-cpu-fp16: screening collapse_models for faults its outputs hide (" in proc.stderr, proc.stderr
    # it screens the graph the candidate's runner converted and ran: the stage is not converted again without its
    # probes (each conversion is an entry of the fp16 cache)
    converted = [onnx.load(f, load_external_data=False) for f in (tmp_path / "cache" / "fp16").glob("*.onnx")]
    assert converted and all(len(m.graph.output) > 1 for m in converted), [
        [o.name for o in m.graph.output] for m in converted]


def test_the_flags_of_a_tensor_of_dynamic_shape_show_inf_and_zeros_in_one_pass():
    """A float32 tensor the sketch cannot take (its shape dynamic: CenterPoint's voxels) is flagged by one
    `ReduceL1` (an infinity or NaN: not finite; all zeros: 0), a float16 one still by its two flags (its sum of |t|
    would overflow float16): the screen's run of the demo's voxel encoder cost 2.9× the stage's own with the
    `Sub` and `Abs` each writing a tensor of its size."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cp_debug.bisect.stages.screen import screen_model

    nodes = [helper.make_node("Mul", ["x", "k"], ["big"], name="scale"),
             helper.make_node("Cast", ["big"], ["half"], name="to_half", to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["half"], ["back"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Relu", ["back"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "flags", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor("k", TensorProto.FLOAT, [], [1e5])])
    screened, _ = screen_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    ops = [n.op_type for n in screened.graph.node]
    assert ops.count("ReduceL1") == 3 and ops.count("Sub") == 1, ops  # big, back, y; half by Sub and Abs
    sess = ort.InferenceSession(screened.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in screened.graph.output]
    got = dict(zip(names, sess.run(None, {"x": np.array([[1, 0, 0, 0], [-2, 0, 3, 0]], np.float32)})))
    assert np.isfinite(got["big::abs_sum"]) and not np.isfinite(got["back::abs_sum"])  # 3e5 past float16: inf
    assert np.isnan(got["half::nonfinite"]) and got["y::abs_sum"] == np.inf
    zero = dict(zip(names, sess.run(None, {"x": np.zeros((5, 4), np.float32)})))
    assert zero["big::abs_sum"] == 0 and zero["half::abs_sum"] == 0 and zero["half::nonfinite"] == 0

    # a float16 candidate converts the screened graph: its ReduceL1s stay float32 (a float16 sum of |t| overflows:
    # awml-base's voxel encoder on an H200 read "makes NaN/Inf" where every value was finite)
    from cp_debug.backends.graph_loader import PrepareGraph
    from cp_debug.bisect.stages.screen import _kept

    converted = PrepareGraph(screened, "ort-cuda-fp16", "fp16", keep_fp32_nodes=_kept(screened, []), check=False)()
    types = {v.name: v.type.tensor_type.elem_type for v in [*converted.model.graph.value_info,
                                                            *converted.model.graph.input]}
    made = {o: n for n in converted.model.graph.node for o in n.output}
    for node in (n for n in converted.model.graph.node if n.op_type == "ReduceL1"):
        src = node.input[0]
        assert types.get(src) == TensorProto.FLOAT or (made[src].op_type == "Cast" and made[src].attribute[0].i
                                                       == TensorProto.FLOAT), (node.name, src)
    assert any(types.get(o.output[0]) == TensorProto.FLOAT16 for o in converted.model.graph.node
               if o.op_type == "Mul"), "the graph is not float16: the check above proves nothing"
