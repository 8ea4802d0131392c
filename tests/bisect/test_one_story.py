"""One story per quantization (issue 115, item 5): the built-in INT8 candidate (`ort-cpu-int8`) and the same
quantization as a user's file (`ort@DIR`: cp_debug's own quantizer, its settings and `--calib` samples, written to a
file) name one root cause with one reading of every probe.

tests/bisect/int8_mobilenet.py's MobileNetV2 with one depthwise output channel ×1000: that channel sets its conv
output's per-tensor range and 99 % of the other values round to zero (checked below without cp_debug, from the file's
own scale). Before, the doors read the one quantization three ways — the built-in judged each probe at its quantizer's
amax and the file at the reference's |x| max; the built-in's local segments were quantized afresh, each calibrated on
its own boundary values and read before the probe's Q/DQ pair, the file's cut from the file and read after it; the
range examiner read the built-in's quantizer only — and named two roots: the planted conv (by its range) and the
classifier's output `y` (by own error, its local error 2.2× the median). Now every probe's budget, own error and
global error are the same in both, and both name the planted conv by the range that loses its values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug

CONV = "/features/features.5/conv/conv.1/conv.1.0/Conv"  # the planted depthwise conv (its BatchNorm folded in)


@pytest.mark.long  # an export, a quantization and a bisect of two INT8 candidates (~20 s on 2 cores)
def test_the_built_in_int8_and_the_same_quantization_as_a_file_tell_one_story(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from cp_debug.graph.model import expose_outputs
    from cp_debug.precision.int8 import quantize_int8
    from tests.bisect.exported import written
    from tests.bisect.int8_mobilenet import depthwise

    x, frames = written(depthwise, tmp_path / "model.onnx", "y")
    model = onnx.load(tmp_path / "model.onnx")
    q = quantize_int8(model, [{"x": f} for f in frames])  # the built-in's quantization, with its settings
    (tmp_path / "file").mkdir()
    onnx.save(q.model, tmp_path / "file" / "model.onnx")
    out = f"{CONV}_output_0"
    # the right answer, without cp_debug: the file's scale on the conv's output rounds most of its values to zero
    q_node = next(n for n in q.model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == out)
    scale = float(numpy_helper.to_array(next(i for i in q.model.graph.initializer if i.name == q_node.input[1])))
    sess = ort.InferenceSession(expose_outputs(model, [out]).SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run([out], {"x": x})[0]
    nonzero = ref[ref != 0]
    assert np.mean(np.abs(nonzero) < scale / 2) > 0.9, scale

    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=np.concatenate(frames))
    file = f"ort@{tmp_path / 'file'}"
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "calib.npz", "-b", f"ort-cpu,ort-cpu-int8,{file}", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    built_in, theirs = ({r["probe"]: r for r in rep["results"][c]} for c in ("ort-cpu-int8", file))
    assert rep["outcomes"]["ort-cpu-int8"] == rep["outcomes"][file], rep["outcome_reasons"]
    compared = 0
    for probe, r in built_in.items():  # one reading: the same budget, own error and global error at every probe
        t = theirs.get(probe)
        if t is None or r.get("local_rel_rmse") is None:
            continue
        compared += 1
        for key in ("expected_rel_rmse", "local_rel_rmse", "rel_rmse"):
            assert t[key] == pytest.approx(r[key], rel=0.02, abs=1e-6), (probe, key, r[key], t[key])
    assert compared > 50, compared
    for label in ("ort-cpu-int8", file):
        cause = rep["root_cause"][label]
        assert cause["probe"] == out, (label, cause["probe"], cause["hint"][:400])
        assert "INT8 resolution lost" in cause["hint"] and "99%" in cause["hint"], (label, cause["hint"][:400])


def test_both_doors_cut_one_segment_and_a_flush_is_the_error_of_the_conv_that_reads_it():
    """Quick (one export, one quantization, two ORT sessions): the built-in's probes (its run graph's float tensors)
    and a user's file of the same quantization (its probes after their pairs, `probes/qdq_pairs`) meet at one cut
    (`qdq_segments.before_pairs`), each boundary fed ahead of the pair that reads it. Two outlier channels (×1000)
    set the range of the ReLU's output that conv2 reads: their own relative error stays small (the outliers dominate
    its norm), conv2's segment — fed the reference's ReLU output ahead of its pair — holds the flush (s7-story fed
    it after the pair, and a planted ResNet's flush moved from conv2 to its block)."""
    import io

    import onnx
    import onnxruntime as ort
    import torch

    from cp_debug.bisect.stages.qdq_segments import before_pairs
    from cp_debug.precision.int8 import quantize_int8
    from cp_debug.probes.naming import ProbeMap
    from cp_debug.probes.qdq_pairs import dequantized
    from tests.precision.qdq_graph import QdqGraph

    torch.manual_seed(0)
    conv = torch.nn.Conv2d
    net = torch.nn.Sequential(conv(3, 16, 3, padding=1), torch.nn.ReLU(), conv(16, 8, 3, padding=1))
    with torch.no_grad():
        net[0].weight[:2] *= 1000  # two outlier channels of 16
        net[0].bias[:2] = 1000.0
        net[2].weight[:, :2] /= 1000  # read back at the others' scale: conv2's output rests on the 14 small ones
    buf = io.BytesIO()
    torch.onnx.export(net.eval(), (torch.randn(1, 3, 16, 16),), buf, input_names=["x"], output_names=["y"],
                      dynamo=False, opset_version=17)
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(buf.getvalue()))
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(3)]
    q = onnx.shape_inference.infer_shapes(quantize_int8(model, [{"x": f} for f in frames]).model)
    relu = next(n.output[0] for n in model.graph.node if n.op_type == "Relu")

    g = QdqGraph(q)
    assert dequantized(g, relu) != relu  # the file reads the ReLU after its pair
    built = ProbeMap({"relu": relu}, {"relu": "Relu"})
    theirs = ProbeMap({"relu": dequantized(g, relu)}, {"relu": "Relu"})
    a = before_pairs(q, {relu: "relu"}, built, ["y"])
    b = before_pairs(q, {dequantized(g, relu): "relu"}, theirs, ["y"])
    assert a[0] == b[0] == {relu: "relu"} and a[1].tensors == b[1].tensors
    assert a[1].tensors["relu"] == relu

    ref = ort.InferenceSession(onnx.utils.Extractor(model).extract_model(["x"], [relu, "y"]).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": frames[0]})
    seg = onnx.utils.Extractor(q).extract_model([relu], [b[1].tensors.get("y", "y")])  # conv2's segment, as cut
    got = ort.InferenceSession(seg.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {relu: ref[0]})
    rel = float(np.linalg.norm(got[0] - ref[1]) / np.linalg.norm(ref[1]))
    deq = ort.InferenceSession(onnx.utils.Extractor(q).extract_model(["x"], [dequantized(g, relu)]).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": frames[0]})[0]
    own = float(np.linalg.norm(deq - ref[0]) / np.linalg.norm(ref[0]))
    assert own < 0.05 and rel > 0.5, (own, rel)  # the ReLU's error hides the flush; conv2's segment holds it
