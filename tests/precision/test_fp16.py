"""convert_to_fp16: names kept, real float16 semantics, explicit FP32 islands, valid models that ORT runs."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from cp_debug.graph.model import expose_outputs
from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.errors import BadInputError
from cp_debug.precision.fp16 import conversion_summary, convert_to_fp16
from cp_debug.backends.spec import BackendSpec

F16 = TensorProto.FLOAT16
F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _mul_chain():
    """z = x·1000·1000 (overflows float16 for |x| > 0.065), w = x + 1e-4."""
    return _model(
        [helper.make_node("Mul", ["x", "k"], ["y"], name="mul1"),
         helper.make_node("Mul", ["y", "k"], ["z"], name="mul2"),
         helper.make_node("Add", ["x", "eps"], ["w"], name="add")],
        [helper.make_tensor_value_info("x", F32, [4])],
        [helper.make_tensor_value_info("z", F32, [4]), helper.make_tensor_value_info("w", F32, [4])],
        [numpy_helper.from_array(np.array(1000.0, np.float32), "k"),
         numpy_helper.from_array(np.array(1e-4, np.float32), "eps")])


def _ort(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


@pytest.fixture(scope="module")
def conv_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.Upsample(scale_factor=2.0), torch.nn.Conv2d(8, 2, 1)).eval()
    x = torch.randn(1, 3, 8, 8)
    import io

    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17)
    return onnx.load_from_string(buf.getvalue()), x.numpy()


def test_io_names_and_probe_outputs_are_kept(conv_model):
    model, x = conv_model
    probes = ["/1/Relu_output_0", "/2/Conv_output_0"]
    exposed = expose_outputs(model, probes)
    half = convert_to_fp16(exposed)
    onnx.checker.check_model(half, full_check=True)
    assert [i.name for i in half.graph.input] == ["x"]
    assert [o.name for o in half.graph.output] == ["y"] + probes
    assert all(v.type.tensor_type.elem_type == F32 for v in list(half.graph.input) + list(half.graph.output))
    # weights are float16; intermediate value infos were re-inferred as float16
    assert {i.data_type for i in half.graph.initializer if len(i.dims) == 4} == {F16}
    vi = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    assert vi["/0/Conv_output_0"] == F16
    summary = conversion_summary(half)
    assert summary["casts_inserted"] == 1 + 3  # one after the input, one before each float32 output
    # ORT runs it; numbers differ from FP32 by float16 rounding only
    ref, got = _ort(exposed, {"x": x}), _ort(half, {"x": x})
    for name in ["y"] + probes:
        d = np.abs(ref[name] - got[name]).max()
        assert 0 < d < 1e-2 * max(1.0, np.abs(ref[name]).max()), (name, d)


def test_resize_scales_stay_float32(conv_model):
    model, _ = conv_model
    half = convert_to_fp16(model)
    resize = next(n for n in half.graph.node if n.op_type == "Resize")
    scales = next(i for i in half.graph.initializer if i.name == resize.input[2])
    assert scales.data_type == F32


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_float16_semantics_overflow_and_rounding():
    """Evaluated with ONNX's reference evaluator, which computes in the declared types."""
    model = _mul_chain()
    half = convert_to_fp16(model)
    x = np.array([0.1, 1.0, 100.0, 1.0 + 2**-11], np.float32)
    z, w = ReferenceEvaluator(half).run(None, {"x": x})
    assert z.dtype == np.float32
    assert np.isinf(z[1:3]).all()  # 1e6 and 1e8 > 65504
    assert not np.isinf(_ort(model, {"x": x})["z"]).any()
    assert w[0] == np.float32(np.float16(np.float16(0.1) + np.float16(1e-4)))  # float16 rounding is visible


def test_precision_report_agrees_with_what_ort_computed(tmp_path):
    """ORT CPU may run float16 nodes in float32 (observed with 1.31 on x86: it does). Either way the report must
    match."""
    path = tmp_path / "mul.onnx"
    onnx.save(_mul_chain(), str(path))
    x = np.array([0.1, 1.0, 100.0, 2.0], np.float32)
    with OrtRunner(path, BackendSpec.parse("ort-cpu-fp16")) as r:
        z = r.infer({"x": x})["z"]
        rep = r.precision_report()
    overflowed = bool(np.isinf(z[1:3]).all())
    assert (rep.effective == "fp16") == overflowed, (z, rep)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_keep_fp32_nodes_and_op_types():
    model = _mul_chain()
    x = np.array([10.0, 20.0, 30.0, 40.0], np.float32)  # x·1000 fits float16, x·1e6 does not
    z_all = ReferenceEvaluator(convert_to_fp16(model)).run(None, {"x": x})[0]
    assert np.isinf(z_all).all()
    kept = convert_to_fp16(model, keep_fp32_nodes=["mul2"])
    z_kept = ReferenceEvaluator(kept).run(None, {"x": x})[0]
    assert np.isfinite(z_kept).all()
    np.testing.assert_allclose(z_kept, x * 1e6, rtol=1e-3)
    mul2 = next(n for n in kept.graph.node if n.name == "mul2")
    assert all(n.op_type == "Cast" for n in kept.graph.node if set(n.output) & set(mul2.input) - {"k"})
    assert conversion_summary(kept)["fp32_nodes_user"] == 1
    by_type = convert_to_fp16(model, keep_fp32_op_types=["Mul"])
    assert np.isfinite(ReferenceEvaluator(by_type).run(None, {"x": x})[0]).all()
    with pytest.raises(BadInputError, match="'nope' not in the graph"):
        convert_to_fp16(model, keep_fp32_nodes=["nope"])


def test_shape_math_stays_exact():
    """Float arithmetic that ends in a Cast to int stays float32: 2049·2 must not become 4096."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i3"], ["w"], axis=0),
        helper.make_node("Cast", ["w"], ["wf"], to=F32),
        helper.make_node("Mul", ["wf", "two"], ["w2"]),
        helper.make_node("Cast", ["w2"], ["wi"], to=TensorProto.INT64),
        helper.make_node("Concat", ["ones", "wi"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest"),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 1, 1, 2049])],
                   [helper.make_tensor_value_info("out", F32, [1, 1, 1, 4098])],
                   [numpy_helper.from_array(np.array([3], np.int64), "i3"),
                    numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                    numpy_helper.from_array(np.array([1, 1, 1], np.int64), "ones")])
    half = convert_to_fp16(model)
    cast = next(n for n in half.graph.node if n.output == ["wf"])
    assert cast.attribute[0].i == F32
    assert conversion_summary(half)["fp32_nodes_required"] >= 2
    x = np.random.RandomState(0).randn(1, 1, 1, 2049).astype(np.float32)
    assert _ort(half, {"x": x})["out"].shape == (1, 1, 1, 4098)


def test_float32_only_ops_are_kept():
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
             helper.make_node("Add", ["x", "r"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [5])],
                   [helper.make_tensor_value_info("y", F32, [5])], [numpy_helper.from_array(np.array(v, np.float32), n)
                    for v, n in ((0.0, "start"), (5.0, "limit"), (1.0, "delta"))])
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    x = np.ones(5, np.float32)
    np.testing.assert_allclose(_ort(half, {"x": x})["y"], x + np.arange(5))


def test_keep_io_types_false_and_constant_overflow_warning():
    model = _model([helper.make_node("Mul", ["x", "big"], ["y"])], [helper.make_tensor_value_info("x", F32, [2])],
                   [helper.make_tensor_value_info("y", F32, [2])],
                   [numpy_helper.from_array(np.array(1e5, np.float32), "big")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = convert_to_fp16(model, keep_io_types=False)
    assert any("overflow" in str(w.message) for w in caught)
    assert conversion_summary(half)["constants_overflowing_fp16"] == ["big"]
    assert half.graph.input[0].type.tensor_type.elem_type == F16
    assert half.graph.output[0].type.tensor_type.elem_type == F16


def test_a_cached_conversion_is_read_back_with_its_warnings_and_a_changed_graph_or_setting_converts_again(
        tmp_path, monkeypatch, conv_model):
    from cp_debug.files import CACHE_ENV, NO_CACHE_ENV
    from cp_debug.precision.fp16_cache import convert_to_fp16_cached

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    folder = tmp_path / "cache" / "fp16"
    model = _model([helper.make_node("Mul", ["x", "big"], ["y"], name="mul")],
                   [helper.make_tensor_value_info("x", F32, [2])], [helper.make_tensor_value_info("y", F32, [2])],
                   [numpy_helper.from_array(np.array(1e5, np.float32), "big")])
    said = []
    for _ in range(2):  # converted and stored, then read back: the same graph, the same warning said again
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            said.append((convert_to_fp16_cached(model).SerializeToString(),
                         [str(w.message) for w in caught if "FP16 conversion" in str(w.message)]))
    assert said[0] == said[1] and said[0][1] and "overflow" in said[0][1][0]
    assert said[0][0] == convert_to_fp16(model).SerializeToString()
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".onnx"]
    stored = next(folder.glob("*.onnx"))
    stored.write_bytes(stored.read_bytes()[:100])  # damaged: converted again, rewritten
    assert convert_to_fp16_cached(model).SerializeToString() == said[0][0]
    assert convert_to_fp16(model).SerializeToString() == stored.read_bytes()
    # another setting, another graph: entries of their own, each what the plain conversion gives
    graph, _ = conv_model
    kept = convert_to_fp16_cached(model, keep_fp32_nodes=["mul"])
    assert conversion_summary(kept)["fp32_nodes_user"] == 1
    assert convert_to_fp16_cached(graph).SerializeToString() == convert_to_fp16(graph).SerializeToString()
    assert len(list(folder.glob("*.onnx"))) == 3
    monkeypatch.setenv(NO_CACHE_ENV, "1")  # off: converted, nothing written
    convert_to_fp16_cached(graph, keep_io_types=False)
    assert len(list(folder.glob("*.onnx"))) == 3


def test_overflow_and_flush_counts_are_read_on_float16_bits():
    """The summary's overflow list and flush count (read on float16's bits) are their definitions: a finite value
    that becomes inf (not an inf or NaN that was one already), a nonzero value that becomes zero (not ±0)."""
    tricky = np.array([1e-9, -1e-9, 0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, 6e-8, 65504.0], np.float32)
    over = np.array([1.0, -1e5, 1e-30], np.float32)
    model = _model([helper.make_node("Mul", ["x", "t"], ["y"], name="m1"),
                    helper.make_node("Mul", ["y", "o"], ["z"], name="m2")],
                   [helper.make_tensor_value_info("x", F32, [10])], [helper.make_tensor_value_info("z", F32, [10])],
                   [numpy_helper.from_array(tricky, "t"), numpy_helper.from_array(np.resize(over, 10), "o")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = conversion_summary(convert_to_fp16(model))
        expected = 0
        for values in (tricky, np.resize(over, 10)):
            half = values.astype(np.float16)
            expected += int(((values != 0) & (half == 0)).sum())
    assert summary["constants_overflowing_fp16"] == ["o"]
    assert summary["constant_values_flushed_to_zero"] == expected == 2 + 3  # ±1e-9; 1e-30 (3 times in o)


def test_an_lstm_quantized_by_ort_stays_float32_and_the_fp16_model_runs(tmp_path):
    """ORT's `quantize_dynamic` writes an LSTM as com.microsoft's DynamicQuantizeLSTM (float32 inputs only; ddddocr's
    captcha reader ships one): its inputs made float16, ONNX Runtime refused the candidate ("Type 'tensor(float16)'
    of input parameter … of operator (DynamicQuantizeLSTM) … is invalid", exit 2 on a valid file)."""
    from onnxruntime.quantization import quantize_dynamic

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(1, 32, 4)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.normal(size=(1, 32, 8)).astype(np.float32), "R")
    m = _model([helper.make_node("LSTM", ["x", "W", "R"], ["y", "yh", "yc"], hidden_size=8, name="lstm"),
                helper.make_node("Sigmoid", ["yh"], ["out"], name="sig")],
               [helper.make_tensor_value_info("x", F32, [5, 1, 4])],
               [helper.make_tensor_value_info("out", F32, [1, 1, 8])], [w, r])
    onnx.save(m, tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"))
    q = onnx.load(tmp_path / "q.onnx")
    assert "DynamicQuantizeLSTM" in {n.op_type for n in q.graph.node}
    half = convert_to_fp16(q)
    x = {"x": rng.normal(size=(5, 1, 4)).astype(np.float32)}
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    want = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_allclose(got, want, atol=2e-2)
    assert "DynamicQuantizeLSTM" in {n.op_type for n in half.graph.node}


def test_a_conv_quantized_dynamically_keeps_its_accumulator_and_scale_in_float32(tmp_path):
    """ORT's `quantize_dynamic` writes a Conv as ConvInteger → Cast(int32 → float) → Mul(input × weight scale): the
    accumulator (here 2.3e5) passes 65504 and the scale product lies near float16's smallest subnormal. Cast and
    Mul made float16, ddddocr's captcha reader read inf at 20 of its convs ("values beyond the FP16 range …
    6.72e+04") where its users' FP16 file (onnxconverter-common, the Casts kept) reads every captcha as FP32 does."""
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.quant_utils import QuantType

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(8, 16, 3, 3)).astype(np.float32), "w")
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["c"], ["out"], name="relu")],
               [helper.make_tensor_value_info("x", F32, [1, 16, 6, 6])],
               [helper.make_tensor_value_info("out", F32, [1, 8, 6, 6])], [w])
    onnx.save(m, tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QUInt8)
    q = onnx.load(tmp_path / "q.onnx")
    assert "ConvInteger" in {n.op_type for n in q.graph.node}
    half = convert_to_fp16(q)
    x = {"x": rng.uniform(0, 4, size=(1, 16, 6, 6)).astype(np.float32)}
    # float16 as a GPU stores it (ONNX's reference): ORT's CPU folds the Cast int32 → float16 → float32 it inserts
    got, want = ReferenceEvaluator(half).run(None, x)[0], ReferenceEvaluator(q).run(None, x)[0]
    assert np.isfinite(got).all() and np.abs(want).max() > 1
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
