"""A deployed file's local-error segments run in its probed session (issue 116 item 5; docs/llm.md "Size (s22)"):
the session switches the readers of each segment's boundaries to the reference's values there (`graph.switches`,
`OrtRunner.infer_switched`), so an INT4 file's 4-bit weights are not prepacked by one session more. Every local value
is the one its own session gave (the segments side by side), and so is the rest of the report; every session the
run makes is counted where ONNX Runtime is asked for it (`ort_sessions.open_session`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.bisect.test_llm_files import LLM, PROMPT


def _bisect(tmp_path, monkeypatch, switched: bool):
    from cp_debug import ort_sessions
    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.bisect.stages import stage_whole

    from cp_debug.graph.grouped import CUT_SUFFIX

    made: list[str] = []  # the INT4 file's sessions of a graph: "segments" (side by side: `::cut` inputs), "probed",
    # "other" (the kernel check: the graph without probes)
    real = ort_sessions.open_session
    plain = len(onnx.load(str(LLM / "llama/int4/model.onnx"), load_external_data=False).graph.output)

    def counted(src, so=None, providers=("CPUExecutionProvider",), **kwargs):
        sess = real(src, so, providers, **kwargs)
        m = None if isinstance(src, str) else onnx.load_from_string(bytes(src))  # (a path: the file's load check,
        if m is not None and any(n.op_type == "MatMulNBits" for n in m.graph.node):  # once a process)
            made.append("segments" if any(i.name.endswith(CUT_SUFFIX) for i in m.graph.input) else
                        "probed" if len(sess.get_outputs()) > plain else "other")
        return sess

    monkeypatch.setattr(ort_sessions, "open_session", counted)
    if not switched:
        monkeypatch.setattr(stage_whole, "switch_tensors", lambda *a: ())
    tmp_path.mkdir()
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    subject = groups.samples_group(groups.model_group(onnx_model=LLM / "llama/fp32/model.onnx"), prompt)
    report = run_request(groups.bisect_request(groups.backends_group(f"ort,ort@{LLM / 'llama/int4'}"), subject,
                                               groups.options_group()))
    return report, made


def test_an_int4_files_local_errors_run_in_its_probed_session(tmp_path, monkeypatch):
    switched, made = _bisect(tmp_path / "a", monkeypatch, True)
    monkeypatch.undo()
    alone, made_alone = _bisect(tmp_path / "b", monkeypatch, False)
    assert made_alone.count("segments") == 1  # the segments side by side: one session more of the 4-bit weights
    assert sorted(made + ["segments"]) == sorted(made_alone) and made.count("probed") == 1
    doc, doc_alone = switched.to_json(), alone.to_json()
    rows = doc["results"][f"ort@{LLM / 'llama/int4'}"]
    assert sum(1 for r in rows if r["local_max_abs"] is not None) > 10  # local errors measured
    for key in ("results", "outcome", "first_divergent", "root_cause", "precision", "probe_effect", "findings"):
        assert doc[key] == doc_alone[key], key  # every probe's propagated and local values exactly, the verdict
    said = doc["settings"]["backends"][f"ort@{LLM / 'llama/int4'}"]["model"]
    assert said == doc_alone["settings"]["backends"][f"ort@{LLM / 'llama/int4'}"]["model"]
    assert said["local_error_sessions"] == 1 and said["local_error_segments"] == len(rows)


def test_a_switched_graph_computes_what_it_computed_and_its_segments_from_the_values_fed():
    """x → Relu → a → Mul(a, 3) → b → Add(b, a) → y, a and b switched: run as it is, every output the same bit for
    bit; a fed → b computed from it, b fed → y from it (and the a it computed); ONNX Runtime's optimised graph without
    its switches is the graph's own; a graph of IR version 3 is not switched."""
    import onnxruntime as ort

    from cp_debug.graph.switches import switch_feed, switched_graph, without_switches

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Mul", ["a", "three"], ["b"]),
             helper.make_node("Add", ["b", "a"], ["y"])]
    f32 = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y", "a", "b")]
    graph = helper.make_graph(nodes, "g", [f32[0]], f32[1:], [numpy_helper.from_array(np.float32(3.0), "three")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sw, cut = switched_graph(model, ["a", "b", "x", "missing"])
    assert cut == ("a", "b")  # x is an input (fed as it is), `missing` no tensor of the graph
    x = np.array([[-1, 2, 3], [4, -5, 6]], np.float32)
    run = ort.InferenceSession(sw.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in run.get_outputs()]
    plain = dict(zip(names, ort.InferenceSession(model.SerializeToString(),
                                                 providers=["CPUExecutionProvider"]).run(names, {"x": x})))
    as_is = dict(zip(names, run.run(names, {"x": x})))
    assert all(np.array_equal(plain[k], as_is[k]) for k in names)
    ra, rb = np.full((2, 3), 10, np.float32), np.full((2, 3), 100, np.float32)
    got = dict(zip(names, run.run(names, {"x": x, **switch_feed({"a": ra, "b": rb})})))
    assert np.array_equal(got["a"], plain["a"])  # a tensor switched is still its own value as an output
    assert np.array_equal(got["b"], ra * 3)  # b's segment (Mul) from a's value fed
    assert np.array_equal(got["y"], rb + ra)  # y's (Add) from b's and a's values fed
    assert [(n.op_type, list(n.input)) for n in without_switches(sw).graph.node] == \
        [(n.op_type, list(n.input)) for n in model.graph.node]
    assert {i.name for i in without_switches(sw).graph.input} == {"x"}
    model.ir_version = 3  # its initializers listed as inputs are constants to ONNX Runtime there: nothing switched
    assert switched_graph(model, ["a", "b"]) == (model, ())
