"""`SPEC@DIR` over files the user's own tools wrote (issue 84, item 3), each made by its real producer here:
an FP16 file by onnxconverter-common's `convert_float_to_float16(model, keep_io_types=True)` (as diffusers' and
Olive's ONNX pipelines make them) and an INT8 Q/DQ file by onnxruntime.quantization's `quantize_static` (QDQ, per
tensor, a real CalibrationDataReader), both from torch.onnx.export's file (its output named after its last node,
`linear`, where cp_debug's export writes `output0`); then the real CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("user_files_models.py")


def _export(func: str, path: Path) -> Path:
    """torch.onnx.export as a user calls it (the default exporter), the model of `user_files_models.FUNC`."""
    import importlib.util
    import warnings

    import torch

    spec = importlib.util.spec_from_file_location("user_files_models", MODELS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net, inputs = getattr(mod, func)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, str(path))
    return path


def _notes(report: dict) -> str:
    return "\n".join(report["warnings"])


def _stripped(model: onnx.ModelProto) -> onnx.ModelProto:
    """Node names n0, n1, … and no scope metadata, as simplifiers write them: only structure maps the probes."""
    for k, node in enumerate(model.graph.node):
        node.name = f"n{k}"
        del node.metadata_props[:]
    return model


@pytest.mark.parametrize("by", ["scope", "structure"])
def test_fp16_file_of_onnxconverter_common_names_its_overflow(tmp_path, by):
    """`structure`: the converter keeps the ReLUs in FP32 (op_block_list) and so puts Casts around each, and the
    scopes are gone: every probe is still mapped, through the Casts."""
    float16 = pytest.importorskip("onnxconverter_common.float16")
    folder = tmp_path / "fp16"
    folder.mkdir()
    fp32 = onnx.load(_export("fp16_overflow", tmp_path / "model.onnx"))
    assert [o.name for o in fp32.graph.output] == ["linear"]
    if by == "scope":
        half = float16.convert_float_to_float16(fp32, keep_io_types=True)
    else:
        half = _stripped(float16.convert_float_to_float16(fp32, keep_io_types=True, op_block_list=["Relu"]))
        assert sum(n.op_type == "Cast" for n in half.graph.node) == 8
    onnx.save(half, folder / "model.onnx")
    proc = cpdebug("bisect", "--torch", f"{MODELS}:fp16_overflow", "-b", f"torch,ort@{folder}",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    label = f"ort@{folder}"
    # the file's own output name, read by order; every probe mapped through the converter's Casts
    notes = _notes(report)
    assert "'linear' as 'output0'" in notes
    assert "refuses this file as it is" not in notes  # it loads in ONNX Runtime as it is: nothing said
    assert f"8 of 8 probes mapped onto the deployed graph (of all modules: 9 by {by})" in notes
    # judged and shown at the precision the file holds: fp16, never ort-cpu-fp32
    assert report["candidate_specs"][label] == f"ort-cpu-fp16@{folder}"
    assert report["judged_at"][label] == "fp16"
    assert "ort-cpu-fp32" not in proc.stdout + notes
    # the planted layer, with the reason cp_debug's own FP16 conversion gives, its FP32 value known
    rc = report["root_cause"][label]
    assert rc["probe"] == "body.4", rc
    assert "FP16 overflow at body.4" in rc["hint"] and "> 65504" in rc["hint"], rc["hint"]
    value = float(rc["hint"].split("|x| = ")[1].split(" ")[0])
    assert 7e4 < value < 8.5e4  # the reference's FP32 value (7.7e4), not inf


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader: four random frames."""

    def __init__(self, name: str):
        rng = np.random.default_rng(0)
        self._frames = iter([{name: rng.standard_normal((1, 4, 16, 16)).astype(np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self._frames, None)


def _quantized(tmp_path: Path, fp8: bool = False, build: str = "healthy") -> tuple[Path, Path]:
    """torch.onnx.export's file and a folder holding it quantized by `quantize_static` (QDQ, per tensor): INT8, or
    float8 e4m3fn (ORT calibrates float8 by its Distribution method only; symmetric, as float8 has no zero point)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    fp32 = _export(build, tmp_path / "model.onnx")
    folder = tmp_path / ("fp8" if fp8 else "int8")
    folder.mkdir()
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(onnx.load(fp32).graph.input[0].name)
    kind = QuantType.QFLOAT8E4M3FN if fp8 else QuantType.QInt8
    extra = dict(calibrate_method=CalibrationMethod.Distribution,
                 extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}) if fp8 else {}
    quantize_static(str(fp32), str(folder / "model.onnx"), reader, quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=kind, weight_type=kind, **extra)
    return fp32, folder


def test_int8_qdq_file_of_quantize_static_maps_every_probe(tmp_path):
    fp32, folder = _quantized(tmp_path)
    # the planted fault: body.4's weight scale of the deployed file off by 1.5 (a file from other weights)
    q = onnx.load(folder / "model.onnx")
    scale = next(i for i in q.graph.initializer if i.name == "body.4.weight_scale")
    scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * np.float32(1.5), scale.name))
    onnx.save(q, folder / "model.onnx")
    proc = cpdebug("bisect", "--onnx", fp32, "-b", f"ort,ort@{folder}", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    label = f"ort@{folder}"
    assert "9 of 9 probes mapped" in _notes(report)  # 1 of 9 before: the weights behind DequantizeLinear
    assert report["judged_at"][label] == "int8"
    # what ran is said at the precision the file holds: INT8's numbers (Q/DQ), not "ran fp32" (ddddocr's detector)
    ran = report["precision"][label]  # its first conv the quantizer left float: "mixed"
    assert ran["effective"] == "mixed" and any("on int8-dequantized inputs" in n for n in ran["notes"]), ran
    assert report["root_cause"][label]["probe"] == "body.4/Conv", report["root_cause"]
    hint = report["root_cause"][label]["hint"]  # its levels are no rounding of the model's weight at its scale
    assert "dequantizes to values 1.5× the reference's" in hint and "not this model's" in hint, hint
    # the ReLUs the quantizer folded into the QuantizeLinear after each conv are no graph difference
    assert not report["graph_differences"][label]["only_in_reference"], report["graph_differences"][label]


def test_a_per_tensor_weight_set_by_an_outlier_reads_as_its_rounding(tmp_path):
    """Issue 115: a per-tensor INT8 weight whose scale an outlier sets (|w| max 54.9, as in a trained conv) is this
    model's weights rounded — said as INT8 weight rounding (before: "dequantizes to values 0.999× the reference's
    … (rel. RMS difference 0.107 …): not this model's", the check expecting per-channel rounding's few 1e-3); the
    planted scale of the test above still reads as not this model's."""
    fp32, folder = _quantized(tmp_path, build="outlier_weight")
    proc = cpdebug("bisect", "--onnx", fp32, "-b", f"ort,ort@{folder}", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    rc = report["root_cause"][f"ort@{folder}"]
    assert rc["probe"] == "body.4/Conv", rc
    assert "not this model's" not in rc["hint"], rc["hint"]
    assert "INT8 weight 'body.4.weight_quantized' of Conv" in rc["hint"], rc["hint"]
    assert "is the reference's weight rounded per tensor at step 0.432 (its |w| max 54.9 / 127" in rc["hint"], rc
    m = re.search(r"(\d+) of its 2304 nonzero values \((\d+)%\) round to zero, a rel\. RMS rounding error of "
                  r"([0-9.]+)", rc["hint"])
    assert m and 60 <= int(m.group(2)) <= 80 and float(m.group(3)) > 0.1, rc["hint"]  # "not this model's" before
    assert "INT8 weight rounding, this model's weights; re-quantize with `nodes_to_exclude=[" in rc["hint"], rc
    assert "): verified" in rc["hint"], rc["hint"]  # the file without that node's Q/DQ holds every output


def test_int8_spec_over_a_quantized_file_is_one_line(tmp_path):
    fp32, folder = _quantized(tmp_path)
    proc = cpdebug("bisect", "--onnx", fp32, "-b", f"ort,ort-cpu-int8@{folder}", "--quiet")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert f"{folder / 'model.onnx'} is already quantized (" in line and f"give it as ort@{folder}" in line, line


def test_fp8_qdq_file_maps_and_is_read_as_fp8(tmp_path):
    """Q/DQ with float8 e4m3fn zero points (opset 19+): mapped as INT8's are, read as fp8 and judged at fp8 (E4M3's
    own rounding, never INT8's budget), its session with ONNX Runtime's graph optimisations off (at its default
    level ORT computes float8 Q/DQ wrong: tests/backends/test_ort_fp8.py)."""
    fp32, folder = _quantized(tmp_path, fp8=True)
    zero_points = [i for i in onnx.load(folder / "model.onnx").graph.initializer if i.name.endswith("_zero_point")]
    assert zero_points and {i.data_type for i in zero_points} == {onnx.TensorProto.FLOAT8E4M3FN}
    proc = cpdebug("bisect", "--onnx", fp32, "-b", f"ort,ort@{folder}", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]  # within fp8
    report = json.loads((tmp_path / "r.json").read_text())
    notes = _notes(report)
    assert "9 of 9 probes mapped" in notes
    assert report["judged_at"][f"ort@{folder}"] == "fp8"
    assert "the deployed files hold fp8" in notes and "no fp8 rounding unit" not in notes
    assert report["precision"][f"ort@{folder}"]["effective"] == "fp8", report["precision"]
    settings = report["settings"]["backends"][f"ort@{folder}"]
    assert {s["graph_optimization_level"] for s in settings.values()} == {"ORT_DISABLE_ALL"}, settings
