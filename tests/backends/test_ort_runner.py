"""OrtRunner: probes, INT8 name mapping and amax, what ORT CPU really runs for FP16, bad inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cp_debug.graph.model import expose_outputs, load_onnx
from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.errors import BackendUnavailableError, BadInputError
from cp_debug.backends.spec import BackendSpec

RELU = "/Relu_output_0"  # ReLU after the first (BN-folded) conv
CONV2 = "/c2/Conv_output_0"


def _ort_reference(path, names, x):
    model = expose_outputs(load_onnx(path), names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))


def test_extra_outputs_fp32_match_plain_ort(tiny):
    ref = _ort_reference(tiny.path, [RELU, CONV2], tiny.x)
    with OrtRunner(tiny.path, BackendSpec.parse("ort"), extra_outputs=[RELU, CONV2]) as r:
        out = r.infer({"x": tiny.x})
        assert list(out) == ["out", "mean", RELU, CONV2]
        for k in out:
            np.testing.assert_array_equal(out[k], ref[k])
        assert r.precision_report().effective == "fp32"
        assert r.quant_amax() == {}


def test_fp16_changes_numbers_but_stays_close(tiny):
    ref = _ort_reference(tiny.path, [RELU], tiny.x)
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16"), extra_outputs=[RELU]) as r:
        out = r.infer({"x": tiny.x})
        settings = r.settings()
    assert settings["precision_transform"]["kind"] == "fp16"
    for k in ("out", RELU):
        d = np.abs(out[k] - ref[k]).max()
        assert 0 < d < 5e-3, (k, d)  # float16 weights: visible, small


def test_ort_cpu_fp16_is_emulated_by_default_and_reported_as_not_fp16_when_native(tiny, monkeypatch):
    """Observed with ORT 1.31 on x86: the CPU EP has no float16 Conv/Gemm kernels and runs them in float32.

    ORT's InsertCastTransformer wraps float16 nodes in Casts and then removes Cast pairs, including our input
    Cast to float16: only the float16-rounded weights remain of FP16. So by default the runner emulates float16
    storage (every float16 tensor rounded after its node) and says so; run natively, the report must say that
    the Convs ran in float32.
    """
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16")) as r:
        r.infer({"x": tiny.x})
        rep = r.precision_report()
        settings = r.settings()
    assert rep.requested == rep.effective == "fp16" and any("storage emulated" in n for n in rep.notes), rep
    assert settings["precision_transform"]["half_storage"]["rounded_tensors"] > 0
    monkeypatch.setenv("CPDEBUG_ORT_CPU_HALF", "native")
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16")) as r:
        r.infer({"x": tiny.x})
        rep = r.precision_report()
    assert rep.requested == "fp16"
    assert not rep.honest, rep
    assert rep.effective in ("fp32", "mixed")
    assert any("float32" in n for n in rep.notes), rep.notes


def test_int8_maps_relu_probe_to_dequantized_output(tiny):
    ref = _ort_reference(tiny.path, [RELU], tiny.x)
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-int8"), extra_outputs=[RELU], calib_feeds=tiny.calib) as r:
        out = r.infer({"x": tiny.x})
        q = r.quantized
        amax = r.quant_amax()
        rep = r.precision_report()
    mapped = q.tensor_map[RELU]
    assert mapped != RELU and mapped.endswith("DequantizeLinear_Output")
    dq = next(n for n in q.model.graph.node if mapped in n.output)
    assert dq.op_type == "DequantizeLinear"
    # the value returned under the original name is the DQ output: non-negative, close to FP32, on the int8 grid
    got = out[RELU]
    assert got.min() >= 0
    step = amax[RELU] / 127
    assert np.abs(got - ref[RELU]).max() <= 3 * step  # quantized input and weights upstream: a few steps
    np.testing.assert_allclose(np.round(got / step), got / step, atol=1e-3)
    # minmax calibration, symmetric: amax = the largest |value| the ReLU produced over the calibration feeds
    calib_max = max(_ort_reference(tiny.path, [RELU], f["x"])[RELU].max() for f in tiny.calib)
    assert amax[RELU] == pytest.approx(calib_max, rel=1e-5)
    assert rep.requested == "int8" and rep.effective in ("int8", "mixed")


def test_int8_needs_calibration(tiny):
    with pytest.raises(BadInputError, match="calibration"):
        OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-int8")).activate()


def test_constructor_does_no_work(tmp_path):
    r = OrtRunner(tmp_path / "does-not-exist.onnx", BackendSpec.parse("ort-cpu-fp16"))  # nothing loaded yet
    assert not r.is_active
    with pytest.raises(BadInputError, match="not found"):
        r.activate()


def test_corrupt_and_invalid_files(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    with pytest.raises(BadInputError) as e:
        OrtRunner(bad, BackendSpec.parse("ort")).activate()
    assert "\n" not in str(e.value)
    # parses, but the checker rejects it: a node reads a tensor nobody produces
    g = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    invalid = tmp_path / "invalid.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(invalid))
    with pytest.raises(BadInputError, match="not a valid ONNX model"):
        OrtRunner(invalid, BackendSpec.parse("ort")).activate()


def test_bad_feeds(tiny):
    with OrtRunner(tiny.path, BackendSpec.parse("ort")) as r:
        with pytest.raises(BadInputError, match="unknown input name.*'y'.*inputs are x"):
            r.infer({"y": tiny.x})
        with pytest.raises(BadInputError, match="missing input"):
            r.infer({})
        with pytest.raises(BadInputError, match="rank"):
            r.infer({"x": tiny.x[0]})
        with pytest.raises(BadInputError, match="dimension 2 differs"):
            r.infer({"x": np.zeros((1, 4, 8, 16), np.float32)})
        with pytest.raises(BadInputError, match="dtype int64"):
            r.infer({"x": tiny.x.astype(np.int64)})
        # same kind, other width: cast quietly
        out64 = r.infer({"x": tiny.x.astype(np.float64)})
        np.testing.assert_array_equal(out64["out"], r.infer({"x": tiny.x})["out"])


def test_unknown_extra_output_lists_valid_names(tiny):
    with pytest.raises(BadInputError, match=r"unknown ONNX tensor name.*valid ones include.*Relu"):
        OrtRunner(tiny.path, BackendSpec.parse("ort"), extra_outputs=["/nope"]).activate()


def test_ort_cuda_unavailable_here(tiny):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        OrtRunner(tiny.path, BackendSpec.parse("ort-cuda-fp16")).activate()


def test_caller_model_is_not_modified(tiny):
    model = load_onnx(tiny.path)
    before = model.SerializeToString()
    with OrtRunner(model, BackendSpec.parse("ort-cpu-fp16"), extra_outputs=[RELU]) as r:
        r.infer({"x": tiny.x})
    assert model.SerializeToString() == before


def test_fp16_io_takes_and_returns_float16_on_the_shared_arena(tiny):
    """The lockstep's FP16 segments: float16 in and out, float32 feeds converted on the way in (bit-exactly as
    numpy would), and the numbers of a float16 input run through the ordinary FP16 graph."""
    x16 = tiny.x.astype(np.float16)
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16"), extra_outputs=[RELU], fp16_io=True,
                   shared_arena=True) as r:
        from_32 = r.infer({"x": tiny.x})
        from_16 = r.infer({"x": x16})
    assert {v.dtype for v in from_32.values()} == {np.dtype(np.float16)}
    for k in from_32:
        np.testing.assert_array_equal(from_32[k], from_16[k])
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16"), extra_outputs=[RELU]) as r:  # float32 edges, own arena
        edges32 = r.infer({"x": x16.astype(np.float32)})
    for k in from_32:  # same graph, same input values: the float32 edge only rounds later
        np.testing.assert_allclose(from_32[k].astype(np.float32), edges32[k], rtol=2e-3, atol=2e-3)
    # fp16_io means nothing at FP32
    with OrtRunner(tiny.path, BackendSpec.parse("ort"), fp16_io=True, shared_arena=True) as r:
        assert r.infer({"x": tiny.x})["out"].dtype == np.float32


def test_a_session_made_without_prepacking_gives_the_values_within_rounding(tiny):
    """`prepack=False` (a session run once: local errors', the screen's): ONNX Runtime does not copy the weights into
    its kernels' layout; the values are a prepacked session's within float rounding (FP32 and emulated FP16)."""
    for spec in ("ort", "ort-cpu-fp16"):
        with OrtRunner(tiny.path, BackendSpec.parse(spec), extra_outputs=[RELU]) as r:
            packed = r.infer({"x": tiny.x})
            with pytest.raises(RuntimeError):  # the entry is not set: ONNX Runtime's default, prepacked
                r._sess.get_session_options().get_session_config_entry("session.disable_prepacking")
        with OrtRunner(tiny.path, BackendSpec.parse(spec), extra_outputs=[RELU], prepack=False) as r:
            loose = r.infer({"x": tiny.x})
            assert r._sess.get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
        for k in packed:
            np.testing.assert_allclose(loose[k], packed[k], rtol=2e-3, atol=2e-3, err_msg=f"{spec} {k}")


def test_infer_some_returns_the_graph_outputs_and_the_named_extras_only(tiny):
    """One session exposing many tensors, read a part at a time (the CUDA whole-stage candidate's chunks)."""
    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16"), extra_outputs=[RELU, CONV2]) as r:
        every = r.infer({"x": tiny.x})
        part = r.infer_some({"x": tiny.x}, [CONV2])
        outputs_only = r.infer_some({"x": tiny.x}, [])
    assert set(part) == set(tiny.output_names) | {CONV2}
    assert set(outputs_only) == set(tiny.output_names)
    for name, value in part.items():
        np.testing.assert_array_equal(value, every[name])


def test_graph_facts_and_transform_are_typed_and_merge_over_segments(tiny):
    """What ORT ran comes back as GraphFacts and the FP16 transform as PrecisionTransform; merged over two
    sessions (a lockstep stage's segments) the counts add up and one unreadable graph makes the precision
    unverified."""
    from dataclasses import replace

    from cp_debug.backends.graph_loader import PrecisionTransform
    from cp_debug.backends.ort.ort_precision import (GraphFacts, merge_graph_facts, merge_transforms,
                                                 precision_report_from_facts)
    from cp_debug.backends.spec import BackendSpec

    with OrtRunner(tiny.path, BackendSpec.parse("ort-cpu-fp16")) as r:
        r.infer({"x": tiny.x})
        facts, transform, settings = r.graph_facts, r.transform, r.settings()
    assert isinstance(facts, GraphFacts) and facts.error is None and facts.cpu_fallback == ()
    assert sum(facts.compute_dtypes.values()) > 0 and "Conv" in facts.compute_ops
    assert isinstance(transform, PrecisionTransform) and transform.kind == "fp16"
    assert settings["precision_transform"] == transform.to_json()
    assert list(transform.to_json())[:3] == ["kind", "keep_fp32_nodes", "nodes"]

    both = merge_graph_facts([facts, facts])
    assert dict(both.compute_dtypes) == {k: 2 * v for k, v in facts.compute_dtypes.items()}
    merged = merge_transforms([transform, transform])
    assert merged.nodes == 2 * transform.nodes and merged.segments == 2
    assert merged.keep_fp32_nodes == transform.keep_fp32_nodes
    assert merge_transforms([]).to_json() == {"kind": "none"}

    spec = BackendSpec.parse("ort-cpu-fp16")
    broken = merge_graph_facts([facts, replace(facts, error="ORT wrote no optimised model")])
    rep = precision_report_from_facts(spec, broken, merged)
    assert rep.effective == "unknown" and "ORT wrote no optimised model" in rep.notes[0]


@pytest.mark.parametrize("precision", ["ort", "ort-cpu-int8"])
def test_graph_facts_read_from_the_dump_without_its_weights_are_those_of_the_whole_dump(tiny, tmp_path, precision):
    """ORT writes the optimised graph's weights aside (`ort_session._DUMP_WEIGHTS`): the facts read from it are
    those of the same session's graph dumped whole, with its weights in the proto."""
    import tempfile

    from cp_debug.backends.ort.ort_precision import graph_facts
    from cp_debug.backends.ort.ort_session import _configure

    spec = BackendSpec.parse(precision)
    calib = [{"x": tiny.x}] if spec.precision == "int8" else None
    runner = OrtRunner(tiny.path, spec, extra_outputs=[RELU], calib_feeds=calib, threads=1)
    with runner:
        model = runner._graph.model
        facts = runner.graph_facts
    assert facts.error is None and facts.compute_dtypes
    with tempfile.TemporaryDirectory() as tmp:
        so = runner.determinism.ort_session_options(threads=1, optimized_model_filepath=f"{tmp}/whole.onnx")
        _configure(so, model, runner._how())
        ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
        whole = graph_facts(onnx.load(f"{tmp}/whole.onnx"))
    assert (facts.compute_dtypes, facts.compute_ops, facts.other_float_dtypes, facts.casts) == (
        whole.compute_dtypes, whole.compute_ops, whole.other_float_dtypes, whole.casts)


def test_a_scalar_input_stays_a_scalar(tmp_path):
    """A segment cut after a Shape → Gather takes a 0-d integer (a BERT's sequence length); the feed keeps it 0-d
    (np.ascontiguousarray made it [1], and the Unsqueeze → Concat after it failed: exit 70 on a BERT's FP16 run)."""
    n = helper.make_tensor_value_info("n", TensorProto.INT64, [])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    one = helper.make_tensor("one", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph([helper.make_node("Unsqueeze", ["n", "axes"], ["u"]),
                               helper.make_node("Concat", ["u", "one"], ["y"], axis=0)], "g", [n], [y], [axes, one])
    path = tmp_path / "scalar.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    with OrtRunner(path, BackendSpec.parse("ort")) as r:
        assert r.infer({"n": np.array(16)})["y"].tolist() == [16, -1]


def test_probe_effect_says_only_what_exposing_probes_blocked():
    """ORT's plain graph of ddddocr's quantize_dynamic file runs one int8 kernel fewer than the probed one (it fuses
    one into float): "exposing probes kept ORT from fusing -1 of 21 int8 kernels" was said; nothing was blocked."""
    from cp_debug.backends.ort.ort_precision import GraphFacts, probe_effect

    plain, probed = GraphFacts(compute_dtypes={"uint8": 21, "float32": 2}), GraphFacts(compute_dtypes={"uint8": 22})
    assert probe_effect(plain, probed) is None
    assert "fusing 5 of 21" in probe_effect(plain, GraphFacts(compute_dtypes={"uint8": 16, "float32": 7}))
