"""The user's own ModelOpt FP8 file as the candidate (issue 86, item 4; issue 84, item 3): `-b ort,ort@DIR` over a
file laid out as NVIDIA ModelOpt's ONNX quantizer writes it (tests/bisect/modelopt_files.py; the layout compared with
ModelOpt's own output where nvidia-modelopt is installed) — mapped layer by layer through its Q/DQ nodes, its
precision read from the file (fp8, never fp32 nor INT8's budget), the ONNX Runtime default-level fault named as the
runtime's with the numbers of this file, and a stale activation scale named at its layer with the file's own range
against the reference's values."""

from __future__ import annotations

import importlib.util
import json

import onnx
import pytest

from tests.backends.test_ort_fp8 import _export, _feed, _net
from tests.bisect.modelopt_files import modelopt_fp8
from tests.cli_run import cpdebug

QUANTIZED = ["/body/body.4/Conv"]  # the node ModelOpt 0.47.0 quantizes in this CNN
RELU3 = "/body/body.3/Relu_output_0"


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return _export(_net(False), tmp_path_factory.mktemp("modelopt") / "cnn.onnx")


def _deploy(fp32, folder, edit=None):
    folder.mkdir()
    path = modelopt_fp8(fp32, folder / "cnn.onnx", QUANTIZED, _feed())
    if edit is not None:
        model = onnx.load(path)
        edit(model)
        onnx.save(model, path)
    return folder


def _bisect(fp32, folder, out):
    proc = cpdebug("bisect", "--onnx", fp32, "-b", f"ort,ort@{folder}", "--json", out, "--quiet")
    return proc, json.loads(out.read_text())


def test_a_modelopt_file_is_mapped_read_as_fp8_and_the_runtime_fault_named(fp32, tmp_path):
    """The file is within FP8 as judged (ONNX Runtime's optimisations off), but the deployment as it runs — ONNX
    Runtime's default options — computes it wrong: a finding (diverged, exit 1), its line naming the setting that
    cures it with the numbers measured (issue 108, item 1)."""
    import onnxruntime

    _deploy(fp32, tmp_path / "d")
    proc = cpdebug("bisect", "--onnx", fp32, "-b", "ort,ort@d", "--json", "r.json", "--quiet", cwd=tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())
    label = "ort@d"  # a short folder: the summary's label column holds it on one line
    assert "7 of 7 probes mapped" in "\n".join(report["warnings"])
    assert report["judged_at"][label] == "fp8"
    assert f"{label} (ort-cpu-fp32@d, the file holds fp8)" in proc.stdout
    notes = " ".join(report["precision"][label]["notes"])
    why = report["outcome_reasons"][label]
    if "refuses this FP8 file" in notes:  # onnxruntime 1.30 refuses such graphs at its default level: said, loudly
        assert proc.returncode == 0 and report["outcome"] == "within_precision", proc.stdout[-3000:]
        assert f"ONNX Runtime {onnxruntime.__version__} refuses" in notes, notes
        return
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["outcome"] == "diverged" and why.startswith(
        f"runtime fault: ONNX Runtime {onnxruntime.__version__} with its default options"), why
    assert "computes this FP8 file wrong" in why and "the file as judged here (every optimisation off): within " \
        "precision" in why, why
    assert f"{label} (ort-cpu-fp32@d, the file holds fp8) diverged: runtime fault" in " ".join(proc.stdout.split())
    on = float(why.split("outputs' rel. RMSE ")[1].split(" ")[0])
    cure = why.split("where the same file with ")[1].split(" gives ")[0]
    cured = float(why.split(" gives ")[1].split(" ")[0])
    off = float(why.split("ORT_DISABLE_ALL: ")[1].split(")")[0])
    assert why.endswith(f"deploy with {cure}") or f"deploy with {cure};" in why, why
    # 1.36 at the default level; ONNX Runtime 1.32's rule ReluQuantRewrite disabled alone: 0.038, as with every
    # optimisation off (CPU, AMD and Intel alike: float32 convs on the same dequantized values)
    assert on > 0.5 and off < 0.1 and cured < 0.1, why
    assert cure in ("disabled_optimizers=['ReluQuantRewrite']", "graph_optimization_level=ORT_ENABLE_BASIC",
                    "graph_optimization_level=ORT_DISABLE_ALL"), why


def test_a_stale_activation_scale_in_the_file_is_named_with_the_files_range(fp32, tmp_path):
    def stale(model):  # the file's scale at the last conv's input from a calibration 64× narrower
        for init in model.graph.initializer:
            if init.name == f"{RELU3}_scale":
                value = onnx.numpy_helper.to_array(init) / 64
                init.CopyFrom(onnx.numpy_helper.from_array(value.astype("float32"), init.name))

    folder = _deploy(fp32, tmp_path / "stale", stale)
    proc, report = _bisect(fp32, folder, tmp_path / "r.json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = report["root_cause"][f"ort@{folder}"]
    assert cause["probe"] == RELU3, report["root_cause"]
    hint = cause["hint"]
    assert hint.startswith(f"the file's FP8 Q/DQ on '{RELU3}' clips the reference's values: its range is"), hint
    share = float(hint.split("]: ")[1].split("%")[0])
    assert share > 5, hint
    assert "did not run fp8 throughout" not in hint  # the file quantizes one conv by its own design


@pytest.mark.skipif(importlib.util.find_spec("modelopt") is None, reason="nvidia-modelopt is not installed")
def test_the_layout_is_modelopts_own(fp32, tmp_path):
    """ModelOpt's quantizer on the same file (its CPU calibration): the same Q/DQ nodes, wiring and attributes, the
    same initializers by name, type and shape, opset and IR version."""
    import numpy as np
    from modelopt.onnx.quantization import quantize

    theirs = tmp_path / "theirs.onnx"
    quantize(str(fp32), quantize_mode="fp8", calibration_data=_feed(), calibration_eps=["cpu"],
             output_path=str(theirs), log_level="WARNING", high_precision_dtype="fp32")
    ours = modelopt_fp8(fp32, tmp_path / "ours.onnx", QUANTIZED, _feed())
    a, b = onnx.load(ours), onnx.load(theirs)

    def qdq(m):
        return sorted((n.op_type, n.name, tuple(n.input), tuple(n.output),
                       tuple((x.name, onnx.helper.get_attribute_value(x)) for x in n.attribute))
                      for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))

    def inits(m):
        return sorted((i.name, i.data_type, tuple(i.dims)) for i in m.graph.initializer)

    assert qdq(a) == qdq(b) and inits(a) == inits(b)
    assert (a.ir_version, [o.version for o in a.opset_import]) == (b.ir_version, [o.version for o in b.opset_import])
    assert np.isfinite(onnx.numpy_helper.to_array(next(i for i in b.graph.initializer
                                                       if i.name == f"{RELU3}_scale")))
