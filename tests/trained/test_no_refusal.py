"""No refusal of what runs (issue 115, item 4): a 0-d tensor and its 1-element twin are one shape; a candidate
that ran with its own numbers is judged, with what ran in its precision line (exit 3 only where none of its
precision ran): an INT8 file whose only quantized op is a Gemm, ORT's CPU float16 run natively."""

from __future__ import annotations

import math

import numpy as np
import onnx

from tests.cli_run import cpdebug
from tests.trained.made import conv_model, lstm_feed, lstm_gemm_model, quantize_gemm_only


def test_zero_d_and_one_element_are_one_shape():
    from cp_debug.compare.diff import TensorDiff
    from cp_debug.compare.noise import Outcome, judge

    # nudenet's YOLOv8 head: a Cast of a scalar, [] in the reference and [1] in the FP16 candidate
    d = TensorDiff.from_arrays("/model.22/Cast_output_0", np.array(320.0, np.float32), np.array([320.0], np.float32))
    assert d.shape_ok and d.status == "ok" and d.max_abs == 0
    assert judge(d, "fp16").outcome is Outcome.WITHIN_PRECISION
    off = TensorDiff.from_arrays("c", np.array([[2.0]], np.float32), np.array(2.5, np.float32))
    assert off.shape_ok and off.max_abs == 0.5  # one value compared as one value: its error is measured
    for ref, test in ((np.zeros(2), np.zeros((1, 2))), (np.zeros(()), np.zeros(0)), (np.zeros(1), np.zeros(2))):
        bad = TensorDiff.from_arrays("t", ref.astype(np.float32), test.astype(np.float32))
        assert bad.status == "shape_mismatch" and not bad.shape_ok and math.isnan(bad.max_abs)


def _optimised(path, tmp_path, level=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    if level is not None:
        so.graph_optimization_level = level
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return onnx.load(tmp_path / "opt.onnx")


def test_int8_file_whose_only_quantized_op_is_a_gemm_ran_int8(tmp_path):
    import onnxruntime as ort

    from cp_debug.backends.graph_loader import PrecisionTransform
    from cp_debug.backends.ort.ort_precision import graph_facts, precision_report_from_facts
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare.noise import ran_none_asked

    onnx.save(lstm_gemm_model(), tmp_path / "fp32.onnx")
    quantize_gemm_only(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", lstm_feed())
    spec = BackendSpec.parse("ort-cpu-int8")
    # ORT fuses DQ → Gemm → Q into its QGemm (an int8 kernel); the MatMul after it stays float: before, the QGemm
    # was no compute node, the MatMul alone counted, and the candidate was refused "ran fp32" (exit 3)
    rep = precision_report_from_facts(spec, graph_facts(_optimised(tmp_path / "int8.onnx", tmp_path)),
                                      PrecisionTransform())
    assert rep.effective == "mixed" and not ran_none_asked(rep.requested, rep.effective), rep
    assert "1 of 2 MatMul/QGemm nodes as int8 kernels" in rep.notes[0], rep.notes
    # optimisations off: the Gemm computes in float on int8-dequantized input and weight, INT8's numbers
    plain = _optimised(tmp_path / "int8.onnx", tmp_path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    rep = precision_report_from_facts(spec, graph_facts(plain), PrecisionTransform())
    assert rep.effective == "mixed", rep
    assert "1 in float arithmetic on int8-dequantized inputs" in rep.notes[0], rep.notes
    fp32 = precision_report_from_facts(spec, graph_facts(_optimised(tmp_path / "fp32.onnx", tmp_path)),
                                       PrecisionTransform())
    assert fp32.effective == "fp32" and ran_none_asked(fp32.requested, fp32.effective)  # none of it: still exit 3


def test_native_cpu_half_is_judged_as_it_ran(tmp_path):
    onnx.save(conv_model(), tmp_path / "conv.onnx")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32))
    res = cpdebug("bisect", "--onnx", tmp_path / "conv.onnx", "--inputs", tmp_path / "x.npz",
                  "--backends", "ort-cpu,ort-cpu-fp16", env={"CPDEBUG_ORT_CPU_HALF": "native"})
    assert res.returncode == 0, res.stdout + res.stderr  # before: exit 3, "ran fp32, not fp16"
    text = " ".join(res.stdout.split())
    assert "ran mixed" in text and "on float16 values Cast up" in text, text


def test_a_scalar_inputs_calibration_samples_stay_arrays(tmp_path):
    """silero-vad's `sr` is a 0-d input: a `--calib` file stacks it as [N]; each sample is a 0-d array (a numpy
    scalar made ONNX Runtime's calibration session fail: "Unable to handle object of type numpy.int64", exit 70)."""
    from cp_debug.bisect.subjects.feeds import calibration_feeds

    one = {"x": np.zeros((1, 8), np.float32), "sr": np.array(16000, np.int64)}
    np.savez(tmp_path / "c.npz", x=np.ones((3, 1, 8), np.float32), sr=np.full(3, 16000, np.int64))
    feeds, _ = calibration_feeds([tmp_path / "c.npz"], one, "model.onnx", "model.onnx takes")
    assert len(feeds) == 3 and all(isinstance(f["sr"], np.ndarray) and f["sr"].shape == () for f in feeds)


def test_a_dim_written_as_minus_one_is_open():
    """paddle2onnx (and tf2onnx) write a dynamic batch as dim_value -1: PaddleOCR's classifier's `x` is
    [-1, 3, ?, ?]. ONNX Runtime runs any batch there; a [1, 3, 48, 192] sample was refused, exit 2 ("input 'x' has
    shape [1, 3, 48, 192], but model.onnx expects [-1, 3, '?', '?']")."""
    from cp_debug.bisect.subjects.feeds import match_inputs
    from cp_debug.errors import BadInputError
    from cp_debug.graph.model import static_dims

    model = conv_model()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[2].dim_param, dims[3].dim_param = -1, "h", "w"
    want = static_dims(model.graph.input[0].type)
    assert want == (None, 3, None, None)
    x = np.zeros((1, 3, 48, 192), np.float32)
    assert match_inputs({"x": x}, ("x",), {"x": want}, "model.onnx")["x"] is x
    try:
        match_inputs({"x": np.zeros((1, 4, 48, 192), np.float32)}, ("x",), {"x": want}, "model.onnx")
    except BadInputError as e:  # a fixed dim that differs is still refused
        assert "expects ['?', 3, '?', '?']" in str(e), e
    else:
        raise AssertionError("a sample of 4 channels for a model of 3 was accepted")
