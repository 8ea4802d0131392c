"""The file as the runtime takes it (issue 107, item 4), on files the real converters write here: onnxconverter-common's
`convert_float_to_float16(keep_io_types=True)` and polygraphy's `--fp-to-fp16` (its `ConvertToFp16` loader, which
calls the same function with shape inference off) over torch.onnx.export's file of `refused_models.pooled` — a mean
over the tokens a mask keeps, the mask made float by a Cast(to=float) neither converter changes, so ONNX Runtime
refuses both files. Each command that takes the file stops with ONNX Runtime's own line and exit 3, never runs the
CPU's emulated float16 twin (which loads) and judges it. What the converter clamped is said with its numbers, and a
ModelOpt-style FP8 file whose scale is inf is said as such, never as a range."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("refused_models.py")
REFUSED = f"ONNX Runtime {onnxruntime.__version__} cannot load this file: "


def _export(func: str, path: Path) -> Path:
    import torch

    from tests.bisect import refused_models

    net, inputs = getattr(refused_models, func)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, str(path), dynamo=False, input_names=["ids", "mask"][:len(inputs)],
                          output_names=["output0"])
    return path


def _converted(fp32: Path, folder: Path, by: str) -> Path:
    """`folder/model.onnx`: `fp32` converted to float16 by onnxconverter-common or polygraphy, as their users run
    them (the converters' UserWarnings on clamped weights swallowed, as a deployment script's log loses them)."""
    from onnxconverter_common import float16
    from polygraphy.backend.onnx import ConvertToFp16

    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if by == "polygraphy":
            half = ConvertToFp16(onnx.load(fp32))()
        else:
            half = float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True)
    onnx.save(half, folder / "model.onnx")
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("refused")
    fp32 = _export("pooled", root / "pooled.onnx")
    rng = np.random.default_rng(0)
    np.savez(root / "s.npz", ids=rng.integers(0, 50, (1, 16)).astype(np.int64), mask=np.ones((1, 16), np.int64))
    return root, fp32, _converted(fp32, root / "occ", "occ"), _converted(fp32, root / "poly", "polygraphy")


def _refused_line(proc, what: str) -> str:
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1 and f"{what}: model.onnx: {REFUSED}" in lines[0], proc.stderr
    return lines[0]


@pytest.mark.parametrize("half", ["emulated", "native"])
def test_bisect_torch_stops_at_polygraphys_file_with_ort_own_line(files, half):
    root, _, _, poly = files
    proc = cpdebug("bisect", "--torch", f"{MODELS}:pooled", "-b", f"torch,ort@{poly}", "--json", root / f"{half}.json",
                   "--quiet", env={"CPDEBUG_ORT_CPU_HALF": half})
    line = _refused_line(proc, f"ort-cpu-fp16@{poly}")
    assert "Type parameter (T) of Optype (Mul) bound to different types" in line, line
    assert "node_block_list=['/Cast']" in line, line  # the cure, the converter's own option
    assert not (root / f"{half}.json").exists()  # nothing judged, nothing written


def test_bisect_onnx_stops_at_the_deployed_file_and_at_a_given_one(files):
    root, fp32, occ, _ = files
    proc = cpdebug("bisect", "--onnx", fp32, "--inputs", root / "s.npz", "-b", f"ort,ort@{occ}", "--quiet")
    line = _refused_line(proc, f"ort-cpu-fp16@{occ}")
    assert "of node (/Cast) does not match expected type" in line, line
    # the converted file given as the model itself: the reference would run its emulated twin
    proc = cpdebug("bisect", "--onnx", occ / "model.onnx", "--inputs", root / "s.npz", "-b", "ort,ort-cpu-fp16",
                   "--quiet")
    _refused_line(proc, "ort-cpu-fp32 (--onnx)")


def test_sweep_and_eval_stop_at_the_deployed_file(files):
    root, _, occ, poly = files
    proc = cpdebug("sweep", "--torch", f"{MODELS}:pooled", "-b", f"torch,ort@{poly}", "--inputs", root / "s.npz",
                   "--out", root / "sweep", "--quiet")
    _refused_line(proc, f"ort-cpu-fp16@{poly}")
    proc = cpdebug("eval", "--torch", f"{MODELS}:pooled", "-b", f"torch,ort@{occ}", "--inputs", root / "s.npz",
                   "--quiet")
    _refused_line(proc, f"ort-cpu-fp16@{occ}")


@pytest.mark.parametrize("by", ["occ", "polygraphy"])
def test_clamped_weights_are_said_with_their_numbers(tmp_path, by):
    from tests.bisect import refused_models

    from cp_debug.lint.weights import check_weights, exported_elsewhere

    folder = _converted(_export("clamped", tmp_path / "clamped.onnx"), tmp_path / "d", by)
    check = check_weights(refused_models.clamped()[0], onnx.load(folder / "model.onnx"), "model.onnx")
    assert check.differ == 0 and not exported_elsewhere([check]), check  # the clamped weight is the model's
    said = ("dense.weight (file tensor 'onnx::MatMul_14'): 12 values clamped to ±1e4 by the FP16 conversion (the "
            "model's largest 3.1e4); 5 nonzero values raised to ±1.19e-7 (the model's smallest 3e-9)")
    assert [c.line() for c in check.clamps] == [said]
    proc = cpdebug("bisect", "--torch", f"{MODELS}:clamped", "-b", f"torch,ort@{folder}", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-2000:] + proc.stderr[-2000:]
    warned = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert f"ort-cpu-fp16@{folder}: model.onnx: {said}" in warned, warned
    assert proc.stderr.count(said) == 1, proc.stderr  # on stderr once


def test_an_fp8_scale_stored_as_inf_is_said_as_nan(tmp_path):
    """ModelOpt's FP16-high-precision scales: an outlier output channel's |w| max / 448 (9.2e4) is inf in FP16."""
    import torch

    from tests.backends.test_ort_fp8 import _export as export_cnn
    from tests.backends.test_ort_fp8 import _feed, _net
    from tests.bisect.modelopt_files import modelopt_fp8

    net = _net(False)
    with torch.no_grad():
        net.body[4].weight[3] *= 7e8
    fp32 = export_cnn(net, tmp_path / "cnn.onnx")
    (tmp_path / "d").mkdir()
    path = modelopt_fp8(fp32, tmp_path / "d" / "cnn.onnx", ["/body/body.4/Conv"], _feed())
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name == "body.4.weight_scale":  # through FP16 and back, as ModelOpt's FP16 mode stores it
            with np.errstate(over="ignore"):
                value = onnx.numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            assert np.isinf(value[3])
            init.CopyFrom(onnx.numpy_helper.from_array(value, init.name))
    onnx.save(model, path)
    proc = cpdebug("bisect", "--onnx", fp32, "-b", f"ort,ort@{tmp_path / 'd'}", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{tmp_path / 'd'}"]
    assert cause["probe"] == "/body/body.4/Conv_output_0", cause
    hint = cause["hint"]
    assert ("the scale 'body.4.weight_scale' is inf in the file in 1 of its 32 channels (the FP16 cast of 9.2e+04"
            in hint and "overflowed): every value it dequantizes there is NaN" in hint), hint
    assert "range is" not in hint and "to zero" not in hint, hint


def test_centerpoints_door_refuses_for_every_ort_candidate_and_leaves_tensorrt_its_own(tmp_path):
    """`deployed_stages`, the door bisect, sweep and fix (`ort-cpu-fp16@DIR` over the user's FP32 pair) and trt-kit
    take for CenterPoint, and eval's and bench's stage runners (`BackendPipeline`): a pair whose backbone declares a
    conv output float16 where it computes float (a hand-made type clash: the real converters' CenterPoint files load)
    is exit 3 with ONNX Runtime's line for ONNX Runtime candidates; a TensorRT candidate's file is TensorRT's."""
    from cp_debug.bisect.subjects.deployed import refuse_unloadable
    from cp_debug.errors import BackendRuntimeError, ExitCode
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject
    from tests.bisect.deployed_files import write_folder
    from tests.bisect.test_deployed_onnx import _small

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.subjects.deployed import deployed_stages

    subject = centerpoint_subject(_small(), random_weights=True, trace_side=64)
    folder = write_folder(tmp_path / "deploy", subject, {})
    path = folder / "pts_backbone_neck_head.onnx"
    model = onnx.load(path)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    model.graph.value_info.append(onnx.helper.make_tensor_value_info(conv.output[0], onnx.TensorProto.FLOAT16, None))
    onnx.save(model, path)
    for spec in ("ort", "ort-cpu-fp16"):
        with pytest.raises(BackendRuntimeError) as err:
            deployed_stages(BackendSpec.parse(f"{spec}@{folder}"), subject, {})
        assert err.value.exit_code == ExitCode.BACKEND
        assert f"@{folder}: pts_backbone_neck_head.onnx: {REFUSED}Type Error" in str(err.value), err.value
    refuse_unloadable(BackendSpec.parse(f"trt-fp16@{folder}"), [path])  # not ONNX Runtime's to refuse
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline

    label = f"ort@{folder}"  # eval's and bench's stage runners
    with pytest.raises(BackendRuntimeError, match=f"pts_backbone_neck_head.onnx: {REFUSED}Type Error"):
        BackendPipeline(label, BackendSpec.parse(label), _small(), None).__enter__()


def test_sweep_and_eval_run_the_deployed_file_not_the_export(tmp_path):
    """`sweep` / `eval --torch … -b torch,ort@DIR` ran cp_debug's own export in the file's place (within precision);
    the deployed FP16 file of `user_files_models.fp16_overflow` overflows to NaN, as ONNX Runtime runs it."""
    import torch

    from tests.bisect import user_files_models

    net, (x,) = user_files_models.fp16_overflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "fp32.onnx"), dynamo=False, input_names=["x"],
                          output_names=["output0"])
    folder = _converted(tmp_path / "fp32.onnx", tmp_path / "d", "occ")
    np.savez(tmp_path / "x.npz", x=x.numpy())
    model = f"{Path(__file__).with_name('user_files_models.py')}:fp16_overflow"
    proc = cpdebug("sweep", "--torch", model, "-b", f"torch,ort@{folder}", "--inputs", tmp_path / "x.npz",
                   "--out", tmp_path / "sweep", "--bisect-top", "0", "--quiet")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    frame = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["frames"][0]
    assert frame["candidates"][f"ort@{folder}"]["outcome"] == "diverged", frame
    proc = cpdebug("eval", "--torch", model, "-b", f"torch,ort@{folder}", "--inputs", tmp_path / "x.npz", "--quiet")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("stored, words", [
    (np.inf, "the scale 'x_scale' is inf in the file (stored in FP16, where a scale past 65504 is inf): every value "
             "it dequantizes is NaN"),
    (np.nan, "the scale 'x_scale' is NaN in the file: every value it dequantizes is NaN"),
    (0.0, "the scale 'x_scale' is 0 in the file (stored in FP16; the reference's |x| max / 448 calls for 0.0223): "
          "every value it dequantizes is 0"),
])
def test_a_per_tensor_scale_that_is_no_number_is_said_as_what_it_does(stored, words):
    import ml_dtypes

    from cp_debug.bisect.findings.quantized.scale_fault import scale_fault

    inits = {"x_scale": onnx.numpy_helper.from_array(np.array(stored, np.float16), "x_scale"),
             "x_zero_point": onnx.numpy_helper.from_array(np.zeros((), ml_dtypes.float8_e4m3fn), "x_zero_point")}
    dq = onnx.helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero_point"], ["x_dq"])
    value = np.linspace(-10.0, 10.0, 64)
    assert scale_fault(dq, inits, value, "fp8", paired=True) == words
