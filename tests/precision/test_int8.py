"""quantize_int8: Q/DQ placement TensorRT accepts, the ReLU renaming trap, tensor_map, amax, errors."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper

from cp_debug.graph.model import expose_outputs
from cp_debug.errors import BadInputError
from cp_debug.precision.int8 import quantize_int8

RELU = "/1/Relu_output_0"  # Conv → ReLU → Conv


@pytest.fixture(scope="module")
def chain():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, padding=1)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), buf, input_names=["x"], output_names=["y"], dynamo=False,
                      opset_version=17)
    rs = np.random.RandomState(0)
    feeds = [{"x": rs.randn(1, 3, 8, 8).astype(np.float32)} for _ in range(4)]
    return onnx.load_from_string(buf.getvalue()), feeds


def _run(model, names, feed):
    model = expose_outputs(model, names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def test_asymmetric_quantizer_drops_relu_and_tensor_map_finds_the_dq_output(chain):
    """ORT removes the ReLU before a QuantizeLinear and gives its name to the conv's pre-ReLU output."""
    model, feeds = chain
    q = quantize_int8(model, feeds, activation_symmetric=False, op_types=None)
    assert not any(n.op_type == "Relu" for n in q.model.graph.node)
    mapped = q.tensor_map[RELU]
    assert mapped != RELU
    ref = _run(model, [RELU], feeds[0])[RELU]
    got = _run(q.model, [RELU, mapped], feeds[0])
    assert got[RELU].min() < 0  # same name, different value: the pre-ReLU conv output
    assert got[mapped].min() >= 0  # the DequantizeLinear output is what the next conv reads
    step = q.activation_amax[RELU] / 127
    assert np.abs(got[mapped] - ref).max() < 4 * step


def test_symmetric_defaults_are_what_tensorrt_takes(chain):
    model, feeds = chain
    q = quantize_int8(model, feeds)
    inits = {i.name: numpy_helper.to_array(i) for i in q.model.graph.initializer}
    qnodes = [n for n in q.model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qnodes:  # symmetric: every zero point is an int8 zero
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    assert not any(i.data_type == TensorProto.INT32 for i in q.model.graph.initializer)  # float bias
    conv_w = [n.input[1] for n in q.model.graph.node if n.op_type == "Conv"]
    for w in conv_w:  # fp32 weights with a Q/DQ pair, per output channel
        dq = next(n for n in q.model.graph.node if w in n.output)
        assert dq.op_type == "DequantizeLinear"
        assert inits[dq.input[1]].shape in ((8,), (4,))
    assert any(n.op_type == "Relu" for n in q.model.graph.node)  # symmetric: ORT keeps the ReLU
    assert q.tensor_map[RELU].endswith("DequantizeLinear_Output")
    assert q.tensor_map["y"] == "y"
    ref = _run(model, [RELU], feeds[0])[RELU]
    assert q.activation_amax[RELU] == pytest.approx(max(_run(model, [RELU], f)[RELU].max() for f in feeds), rel=1e-5)
    assert ref.max() <= q.activation_amax[RELU] + 1e-6


def test_a_tensor_several_nodes_read_is_read_as_it_is_as_a_file_of_it():
    """tensor_map reads a tensor after its Q/DQ pair only where the pair alone reads it, as a user's file of the
    same quantization is read (`probes/qdq_pairs.dequantized`): a ReLU's output two convs read, each through a pair
    of its own (TensorRT's dedicated pairs), holds no one dequantized value; it was read after the first pair. Its
    amax is still its pairs' (issue 115, item 5)."""
    from cp_debug.probes.qdq_pairs import dequantized
    from tests.precision.qdq_graph import QdqGraph

    class Skip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
            self.c = torch.nn.Conv2d(8, 8, 1)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.b(h) + self.c(h)

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.onnx.export(Skip().eval(), (torch.randn(1, 3, 8, 8),), buf, input_names=["x"], output_names=["y"],
                      dynamo=False, opset_version=17)
    model = onnx.load_from_string(buf.getvalue())
    feeds = [{"x": np.random.RandomState(k).randn(1, 3, 8, 8).astype(np.float32)} for k in range(3)]
    q = quantize_int8(model, feeds)
    relu = next(n.output[0] for n in model.graph.node if n.op_type == "Relu")
    conv_a = next(n.output[0] for n in model.graph.node if n.op_type == "Conv")

    g = QdqGraph(q.model)
    pairs = [n for n in q.model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == relu]
    assert len(pairs) == 2, pairs  # one pair for each conv
    assert q.tensor_map[relu] == relu == dequantized(g, relu)
    assert q.tensor_map[conv_a].endswith("DequantizeLinear_Output")  # its one pair alone reads it
    assert relu in q.activation_amax and q.activation_amax[relu] > 0
    for t, mapped in q.tensor_map.items():  # one rule for both doors
        assert mapped == dequantized(g, t), t


def test_exclude_nodes_and_temp_files(chain, tmp_path, monkeypatch):
    model, feeds = chain
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    q = quantize_int8(model, feeds, exclude_nodes=["/2/Conv"], method="percentile")
    conv2 = next(n for n in q.model.graph.node if n.name == "/2/Conv")
    producers = {o: n for n in q.model.graph.node for o in n.output}
    assert conv2.input[1] not in producers  # its weight is not dequantized: left in float
    assert os.listdir(tmp_path) == []
    with pytest.raises(BadInputError, match="not in the graph"):
        quantize_int8(model, feeds, exclude_nodes=["/9/Conv"])


def test_bad_calibration(chain):
    model, feeds = chain
    with pytest.raises(BadInputError, match="calibration inputs"):
        quantize_int8(model, [])
    with pytest.raises(BadInputError, match="missing \\['x'\\]"):
        quantize_int8(model, [{"z": feeds[0]["x"]}])
    with pytest.raises(BadInputError, match="calibration method"):
        quantize_int8(model, feeds, method="magic")


def test_a_cached_quantization_is_read_back_and_other_feeds_or_settings_quantize_again(chain, tmp_path, monkeypatch):
    from cp_debug.files import CACHE_ENV, NO_CACHE_ENV
    from cp_debug.precision.int8_cache import quantize_int8_cached

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    folder = tmp_path / "cache" / "int8"
    model, feeds = chain
    plain = quantize_int8(model, feeds)
    stored = quantize_int8_cached(model, feeds)
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".onnx"]
    read = quantize_int8_cached(model, feeds)  # read back: the same graph, tensor map and ranges as quantized
    for q in (stored, read):
        assert q.model.SerializeToString() == plain.model.SerializeToString()
        assert (q.tensor_map, q.activation_amax, q.method) == (plain.tensor_map, plain.activation_amax, plain.method)
    entry = next(folder.glob("*.onnx"))
    entry.write_bytes(entry.read_bytes()[:100])  # damaged: quantized again, rewritten
    assert quantize_int8_cached(model, feeds).model.SerializeToString() == plain.model.SerializeToString()
    assert entry.read_bytes() == plain.model.SerializeToString()
    # other calibration data, another exclusion, another method: entries of their own, each the plain result
    other = [{"x": f["x"] * 2} for f in feeds]
    assert quantize_int8_cached(model, other).activation_amax == quantize_int8(model, other).activation_amax \
        != plain.activation_amax
    excluded = quantize_int8_cached(model, feeds, exclude_nodes=["/2/Conv"])
    assert excluded.model.SerializeToString() == quantize_int8(model, feeds, exclude_nodes=["/2/Conv"]).model \
        .SerializeToString()
    quantize_int8_cached(model, feeds, method="percentile")
    assert len(list(folder.glob("*.onnx"))) == 4
    monkeypatch.setenv(NO_CACHE_ENV, "1")  # off: quantized, nothing written
    quantize_int8_cached(model, feeds, method="entropy")
    assert len(list(folder.glob("*.onnx"))) == 4


def test_an_opset_11_model_is_quantized_per_channel_at_opset_13():
    """ORT's quantizer writes a per-channel QuantizeLinear's `axis` whatever the model's opset, and opset 11's
    QuantizeLinear has none: ddddocr's opset-11 YOLO detector (pytorch 1.9's export) got an INT8 candidate ONNX
    Runtime refused ("Unrecognized attribute: axis", exit 2). The model is converted to opset 13 first; every
    original tensor keeps its name."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Upsample(scale_factor=2.0, mode="nearest"), torch.nn.Conv2d(8, 4, 1)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), buf, input_names=["x"], output_names=["y"], dynamo=False,
                      opset_version=11)
    model = onnx.load_from_string(buf.getvalue())
    feeds = [{"x": np.random.RandomState(k).randn(1, 3, 8, 8).astype(np.float32)} for k in range(3)]
    q = quantize_int8(model, feeds)
    assert next(o.version for o in q.model.opset_import if o.domain in ("", "ai.onnx")) == 13
    assert any(a.name == "axis" for n in q.model.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute)
    ref = _run(model, ["y"], feeds[0])["y"]
    got = ort.InferenceSession(q.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds[0])
    assert np.abs(got[0] - ref).max() < 0.1 * np.abs(ref).max()  # INT8's numbers of the same network
    assert set(q.tensor_map) >= {n.output[0] for n in model.graph.node if n.op_type == "Conv"}
