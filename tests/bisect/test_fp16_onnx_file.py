"""A user's float16 file given as `--onnx` (onnxconverter-common's `convert_float_to_float16(keep_io_types=True)`:
float32 at the inputs and outputs, float16 inside), which plain ONNX Runtime loads and runs, is bisected, not refused
(issue 115, item 4). The lockstep cuts it into segments fed the values the runners keep in float32: a segment's
float16 input was declared float32 from its array, and ONNX Runtime refused the cut ("Type Error: Type
(tensor(float16)) of output arg (r) … does not match", exit 2) against either backend; it is declared as the file
declares it now (`graph.plan._as_declared`), the runner casting the feed."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug


@pytest.fixture(scope="module")
def half_file(tmp_path_factory):
    from onnxconverter_common import float16

    root = tmp_path_factory.mktemp("fp16_onnx")
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, root / "f16.onnx")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    np.savez(root / "x.npz", x=x)
    ort.InferenceSession(str(root / "f16.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})  # it runs
    return root


@pytest.mark.parametrize("candidate", ["ort", "ort-cpu-fp16"])
def test_a_float16_file_onnx_runtime_runs_is_bisected(half_file, candidate):
    out = half_file / f"{candidate}.json"
    res = cpdebug("bisect", "--onnx", half_file / "f16.onnx", "--inputs", half_file / "x.npz", "-b",
                  f"ort,{candidate}", "--json", out)
    assert res.returncode == 0, res.stderr[-1500:]
    report = json.loads(out.read_text())
    label = report["candidates"][0]
    assert report["outcomes"][label] == "within_precision"
    assert {"h", "r", "y"} <= {p["name"] for p in report["probes"]}  # the float16 tensors inside compared too


def test_a_float16_file_quantized_to_int8_is_its_float32_twin_quantized(half_file):
    """`ort-cpu-int8` of the same file: ONNX Runtime's calibrator fed float32 to its float16 graph and stopped
    ("Unexpected input data type. Actual: (tensor(float)) , expected: (tensor(float16))"): an internal error, exit
    70. The file's float32 twin (`half_storage.widen_half`: its float16 widened, exact) is quantized now, said in its
    settings."""
    out = half_file / "int8.json"
    res = cpdebug("bisect", "--onnx", half_file / "f16.onnx", "--inputs", half_file / "x.npz", "-b",
                  "ort-cpu,ort-cpu-int8", "--json", out)
    assert res.returncode in (0, 4), res.stderr[-1500:]  # judged (healthy, or beyond INT8's budget on one sample)
    report = json.loads(out.read_text())
    assert report["outcomes"]["ort-cpu-int8"] in ("within_precision", "degraded"), report["outcome_reasons"]
    transform = report["settings"]["backends"]["ort-cpu-int8"]["f16"]["precision_transform"]
    assert transform["kind"] == "int8_qdq" and transform["from_float16"] is True, transform
