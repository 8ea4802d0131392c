"""`torch-cpu-fp8` / `torch-cuda-fp8` (issue 86, item 1): the PyTorch module with every Linear / Conv's input and
weight in E4M3 per tensor, as `ort-*-fp8` writes ModelOpt's FP8 (`backends/pytorch/torch_fp8.py`), emulated in float32;
on
CUDA 8.9+ nn.Linear as real FP8 GEMMs through `torch._scaled_mm`. The report says which ran how.

The models are tests/backends/fp8_models.py's: the small CNN of test_ort_fp8.py (healthy, and with its planted weight
outlier) and a transformer block of our own. The CUDA tests run on an H100/H200 only (skipped here with the reason):

    PYTHONPATH=. python -m pytest -q tests/backends/test_torch_fp8.py -k cuda
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cp_debug.backends.factory import make_runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BadInputError
from tests.backends import fp8_models
from tests.cli_run import cpdebug

MODELS = Path(fp8_models.__file__)
GEMM_LAYERS = ["qkv", "proj", "fc1", "fc2"]  # the block's Linears whose widths are multiples of 16 (not its head)


def _cuda_fp8() -> str | None:
    """None where torch runs FP8 GEMMs here; else why the CUDA tests are skipped."""
    if not torch.cuda.is_available():
        return "no CUDA device here: torch-cuda-fp8's FP8 GEMMs (torch._scaled_mm) run on an H100/H200"
    if torch.cuda.get_device_capability() < (8, 9):
        return f"{torch.cuda.get_device_name()} has no FP8 tensor cores (compute capability 8.9+)"
    return None


needs_fp8_gpu = pytest.mark.skipif(_cuda_fp8() is not None, reason=_cuda_fp8() or "")


def _rel_rmse(test: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(test, np.float64) - ref) ** 2)) / np.sqrt(np.mean(np.square(ref))))


def _export(module: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """`module` as torch.onnx.export writes it at opset 17 (the FP8 transform converts it to 19), input x, output y."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=17)
    return path


def _run(spec: str, build, feed=None, calib=None, onnx=None):
    """(output, precision report, settings) of `spec` on fp8_models' `build`, fed its own example input."""
    module, (x,) = build()
    feed = {"x": x.numpy()} if feed is None else feed
    with make_runner(BackendSpec.parse(spec), torch_module=module, onnx_model=onnx, input_names=["x"],
                     output_names=["y"], calib_feeds=calib) as runner:
        y = runner.infer(feed)["y"]
        return y, runner.precision_report(), runner.settings()


def _bisect(build: str, tmp_path: Path, backends: str = "torch,torch-cpu-fp8", *extra):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{MODELS}:{build}", "-b", backends, "--json", out, *extra)
    return proc, json.loads(out.read_text())


def _stage(report: dict, label: str) -> dict:
    return next(iter(report["settings"]["backends"][label].values()))


def test_specs_parse_fp8_for_torch_too():
    for text in ("torch-cpu-fp8", "torch-cuda-fp8"):
        spec = BackendSpec.parse(text)
        assert spec.precision == "fp8" and spec.is_torch and spec.calibrated and str(spec) == text
    with pytest.raises(BadInputError, match="supports"):
        BackendSpec.parse("trt-fp8")


def test_the_cast_is_onnx_runtimes_quantizelinear_bit_for_bit():
    """Division by the float32 scale, saturation to ±448, torch's float8_e4m3fn cast: the codes ONNX Runtime's
    QuantizeLinear (saturate=1) and precision/fp8.to_e4m3 write, over normals, subnormals, flushes and overflows."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cp_debug.backends.pytorch.torch_fp8 import fp8_scale, to_e4m3
    from cp_debug.precision import fp8

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(20000), rng.standard_normal(2000) * 1e-4, rng.standard_normal(200) * 40,
                        [0.0, -0.0, 1e-30, 7.0, -7.0]]).astype(np.float32)
    scale = fp8_scale(7.0)
    ours = to_e4m3(torch.from_numpy(x), torch.tensor(scale)).view(torch.uint8).numpy()
    assert np.array_equal(ours, fp8.to_e4m3(x, scale).view(np.uint8))
    graph = helper.make_graph(  # Q at the scale, then DQ at 1: the codes' values, which name them (but ±0)
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], saturate=1),
         helper.make_node("DequantizeLinear", ["q", "one", "z"], ["y"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [onnx.numpy_helper.from_array(np.array(scale, np.float32), "s"),
         onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one"),
         helper.make_tensor("z", TensorProto.FLOAT8E4M3FN, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0],
                                  torch.from_numpy(ours).view(torch.float8_e4m3fn).float().numpy())


@pytest.mark.parametrize("build", ["cnn", "cnn_fault"])
def test_the_torch_emulation_agrees_with_ort_cpu_fp8(build, tmp_path):
    """The same model through both lanes, calibrated on the same feed: apart by float32 summation order only (a few
    1e-7), far below FP8's step (2^-4) and its error against FP32 (0.086 healthy)."""
    module, (x,) = getattr(fp8_models, build)()
    feed = {"x": x.numpy()}
    onnx = _export(module, x, tmp_path / "m.onnx")
    ref = _run("torch", getattr(fp8_models, build))[0]
    ours, report, settings = _run("torch-cpu-fp8", getattr(fp8_models, build), calib=[feed])
    theirs = _run("ort-cpu-fp8", getattr(fp8_models, build), calib=[feed], onnx=onnx)[0]
    assert _rel_rmse(ours, theirs) < 1e-5, _rel_rmse(ours, theirs)  # measured 5.6e-7 (healthy), 2.2e-7 (fault)
    assert _rel_rmse(ours, ref) > 0.02  # FP8's own rounding is there: the two agree on it
    assert report.effective == "fp8" and report.notes[0].startswith("emulated — not run on FP8 hardware")
    assert settings["fp8"]["arithmetic"] == "emulated" and settings["fp8"]["quantized_layers"] == 4


def test_a_softmax_read_by_a_linear_takes_the_fixed_scale(tmp_path):
    """ModelOpt's 1/448 where a Softmax feeds a quantized layer, whatever the calibration saw: as ort-cpu-fp8 does."""

    class Gate(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.score, self.mix = torch.nn.Linear(16, 16), torch.nn.Linear(16, 8)

        def forward(self, x):
            return self.mix(torch.softmax(self.score(x) * 0.1, dim=-1))  # probabilities far below 1

    def build():
        torch.manual_seed(1)
        return Gate().eval(), (torch.randn(4, 16, generator=torch.Generator().manual_seed(2)),)

    module, (x,) = build()
    feed = {"x": x.numpy()}
    ours, report, _ = _run("torch-cpu-fp8", build, calib=[feed])
    theirs = _run("ort-cpu-fp8", build, calib=[feed], onnx=_export(module, x, tmp_path / "g.onnx"))[0]
    assert _rel_rmse(ours, theirs) < 1e-5
    assert any(n.startswith("1 layer input(s) read straight from a Softmax at ModelOpt's fixed scale 1/448")
               for n in report.notes), report.notes


def test_calibration_feeds_set_the_ranges():
    """Max over --calib's feeds; none given: the first input run (the ORT lane's rule), said in the report."""
    module, (x,) = fp8_models.cnn()
    feed = {"x": x.numpy()}
    own, report, settings = _run("torch-cpu-fp8", fp8_models.cnn)
    same = _run("torch-cpu-fp8", fp8_models.cnn, calib=[feed])[0]
    wide, _, wide_settings = _run("torch-cpu-fp8", fp8_models.cnn, calib=[feed, {"x": 6 * x.numpy()}])
    np.testing.assert_array_equal(own, same)
    assert not np.array_equal(own, wide)
    assert settings["fp8"]["calibration"] == "the first input run (no calibration feeds given)"
    assert wide_settings["fp8"]["calibration"] == "2 calibration feed(s)"
    assert "calibrated by max over the first input run (no calibration feeds given)" in report.notes


def test_multihead_attention_is_said_mixed():
    """nn.MultiheadAttention computes its projections in one fused function, past its Linear modules: said, and the
    run is mixed, not fp8."""

    class Mha(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn, self.head = torch.nn.MultiheadAttention(32, 4, batch_first=True), torch.nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.attn(x, x, x, need_weights=False)[0])

    def build():
        torch.manual_seed(0)
        return Mha().eval(), (torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(0)),)

    _, report, settings = _run("torch-cpu-fp8", build)
    assert report.effective == "mixed"
    assert any("nn.MultiheadAttention call(s) computed their projections in float32" in n for n in report.notes)
    assert settings["fp8"]["not_quantized"] == {"nn.MultiheadAttention": 1}


def test_healthy_cnn_is_within_fp8(tmp_path):
    proc, report = _bisect("cnn", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["judged_at"]["torch-cpu-fp8"] == "fp8" and report["outcome"] == "within_precision"
    out = next(r for r in report["results"]["torch-cpu-fp8"] if r["probe"] == "output0")
    assert 0.02 < out["rel_rmse"] < 0.25  # measured 0.090: FP8's rounding, far inside its budget 0.5
    precision = report["precision"]["torch-cpu-fp8"]
    assert precision["effective"] == "fp8"
    assert precision["notes"][0].endswith("emulated — not run on FP8 hardware (no FP8 GEMM on the CPU): 4 layers "
                                          "(3 Conv2d, 1 Linear) with E4M3 inputs and weights (per-tensor scales "
                                          "amax/448, ModelOpt's), float32 arithmetic on the dequantized values")
    text = " ".join(proc.stdout.split())
    assert "emulated — not run on FP8 hardware" in text  # the summary's precision line
    fp8 = _stage(report, "torch-cpu-fp8")["fp8"]
    assert fp8["fp8_gemm_layers"] == [] and sorted(fp8["emulated_layers"]) == ["body.0", "body.2", "body.4", "head"]
    assert fp8["weights_flushed"] == {}


def test_transformer_block_is_within_fp8_and_says_what_it_left_in_float32(tmp_path):
    proc, report = _bisect("block", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["outcome"] == "within_precision"
    notes = " ".join(report["precision"]["torch-cpu-fp8"]["notes"])
    assert "5 layers (5 Linear)" in notes
    assert "1 F.scaled_dot_product_attention call(s)" in notes and "internals (QK^T, softmax, ·V)" in notes


def test_weight_outlier_flushing_a_conv_is_the_root_cause(tmp_path):
    """test_ort_fp8.py's planted fault through the torch lane: the second conv's outlier input channel sets its
    per-tensor scale and flushes its other weights: named at that conv, the share said."""
    proc, report = _bisect("cnn_fault", tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["root_cause"]["torch-cpu-fp8"]["probe"] == "body.2", report["root_cause"]
    results = {r["probe"]: r for r in report["results"]["torch-cpu-fp8"]}
    assert results["body.0"]["rel_rmse"] < 0.1 and results["body.2"]["local_rel_rmse"] > 0.9
    assert _stage(report, "torch-cpu-fp8")["fp8"]["weights_flushed"] == {"body.2.weight": 0.9375}  # all but ch. 5
    assert "flushes to zero 94% of body.2.weight's nonzero values" in " ".join(
        report["precision"]["torch-cpu-fp8"]["notes"])


def test_calib_reaches_the_torch_lane(tmp_path):
    """`--calib FILE.npz` calibrates torch-cpu-fp8 as it does ort-cpu-fp8 (the stage runner hands it over)."""
    _, (x,) = fp8_models.cnn()
    np.savez(tmp_path / "calib.npz", x=2 * x.numpy())
    proc, report = _bisect("cnn", tmp_path, "torch,torch-cpu-fp8", "--calib", tmp_path / "calib.npz")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert _stage(report, "torch-cpu-fp8")["fp8"]["calibration"] == "1 calibration feed(s)"


def test_scaled_linear_is_the_emulated_product():
    """The FP8 GEMM's calling convention (x (…, K) row-major, the weight (N, K) read column-major as (K, N), 0-d
    float32 scales, float32 out, bias after) against float32 arithmetic on the same E4M3 values. Runs on torch's CPU
    `_scaled_mm` where this build has one (the lane itself takes it on CUDA 8.9+ only)."""
    from cp_debug.backends.pytorch.torch_fp8 import fp8_scale, scaled_linear, to_e4m3

    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 5, 64, generator=g), torch.randn(32, 64, generator=g), torch.randn(32, generator=g)
    sx, sw = (torch.tensor(fp8_scale(float(t.abs().max()))) for t in (x, w))
    x8, w8 = to_e4m3(x, sx), to_e4m3(w, sw)
    try:
        y = scaled_linear(x8, w8, sx, sw, b)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"this torch has no CPU torch._scaled_mm ({str(err).splitlines()[0][:80]})")
    emulated = torch.nn.functional.linear(x8.float() * sx, w8.float() * sw, b)
    assert y.shape == (2, 5, 32) and y.dtype == torch.float32
    torch.testing.assert_close(y, emulated, rtol=1e-5, atol=1e-5)


def test_gemm_bookkeeping_through_cpu_scaled_mm(monkeypatch):
    """The lane's GEMM path and what it says, with torch's CPU `_scaled_mm` standing in for a GPU (no claim on
    hardware: the CUDA tests below are the real lane): the block's four 16-aligned Linears as GEMMs, its 10-wide head
    emulated with the reason; the numbers the emulation's; a submodule alone as in the whole run."""
    from cp_debug.backends.pytorch import torch_fp8

    probe = torch_fp8.to_e4m3(torch.ones(16, 16), torch.tensor(1.0))
    try:
        torch_fp8.scaled_linear(probe, probe, torch.tensor(1.0), torch.tensor(1.0), None)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"this torch has no CPU torch._scaled_mm ({str(err).splitlines()[0][:80]})")
    _, (x,) = fp8_models.block()
    feed = {"x": x.numpy()}
    emulated = _run("torch-cpu-fp8", fp8_models.block, calib=[feed])[0]
    monkeypatch.setattr(torch_fp8, "_gemm_unavailable", lambda device: None)
    monkeypatch.setattr(torch_fp8, "_gpu_name", lambda device: "a stand-in")
    module, _ = fp8_models.block()
    with make_runner(BackendSpec.parse("torch-cpu-fp8"), torch_module=module, input_names=["x"], output_names=["y"],
                     calib_feeds=[feed], probe_modules=["fc1"], capture_inputs=True) as runner:
        out = runner.infer(feed)
        np.testing.assert_array_equal(runner.run_submodule("fc1", (out["fc1:in0"],)), out["fc1"])
        report, fp8 = runner.precision_report(), runner.settings()["fp8"]
    assert fp8["arithmetic"] == "fp8_gemm+emulated" and fp8["fp8_gemm_layers"] == GEMM_LAYERS
    assert fp8["emulated_layers"] == {"head": "in/out features 64/10: _scaled_mm needs multiples of 16"}
    assert report.notes[0] == (
        "ran on FP8 hardware: 4 of 5 layers as FP8 GEMMs (torch._scaled_mm on a stand-in: E4M3 operands, per-tensor "
        "scales, float32 output, bias added after): qkv, proj, fc1, fc2; emulated, float32 arithmetic on E4M3 values: "
        "head (in/out features 64/10: _scaled_mm needs multiples of 16)")
    assert _rel_rmse(out["y"], emulated) < 1e-5


@needs_fp8_gpu
def test_cuda_fp8_gemm_lane_runs_the_block_on_fp8_hardware():
    """On an H100/H200: the block's four 16-aligned Linears as FP8 GEMMs, its 10-wide head emulated, said so. Apart
    from the CPU emulation by accumulation order, which moves a few values of each next layer's input across an E4M3
    rounding boundary (a step of 2^-4 each): measured 0.0038 on an H200, a tenth of FP8's own error against FP32
    (0.038) and far inside its budget (0.5); one GEMM alone is apart by 1e-4 (the next test)."""
    _, (x,) = fp8_models.block()
    feed = {"x": x.numpy()}
    gpu, report, settings = _run("torch-cuda-fp8", fp8_models.block, calib=[feed])
    cpu = _run("torch-cpu-fp8", fp8_models.block, calib=[feed])[0]
    ref = _run("torch", fp8_models.block)[0]
    fp8 = settings["fp8"]
    assert fp8["arithmetic"] == "fp8_gemm+emulated" and fp8["fp8_gemm_layers"] == GEMM_LAYERS, fp8
    assert list(fp8["emulated_layers"]) == ["head"] and "multiples of 16" in fp8["emulated_layers"]["head"]
    assert report.effective == "fp8"
    assert report.notes[0].startswith("ran on FP8 hardware: 4 of 5 layers as FP8 GEMMs (torch._scaled_mm on ")
    assert report.notes[0].endswith("qkv, proj, fc1, fc2; emulated, float32 arithmetic on E4M3 values: head (in/out "
                                    "features 64/10: _scaled_mm needs multiples of 16)")
    apart = _rel_rmse(gpu, cpu)
    print(f"torch-cuda-fp8 (FP8 GEMMs) vs torch-cpu-fp8 (emulated): rel. RMSE {apart:.3g}; "
          f"vs FP32 {_rel_rmse(gpu, ref):.3g} / {_rel_rmse(cpu, ref):.3g}")
    assert apart < 0.25 * _rel_rmse(cpu, ref)
    assert abs(_rel_rmse(gpu, ref) - _rel_rmse(cpu, ref)) < 0.2 * _rel_rmse(cpu, ref)


@needs_fp8_gpu
def test_cuda_fp8_gemm_is_the_emulation_up_to_accumulation():
    """One FP8 GEMM on the GPU against float32 arithmetic on the same E4M3 values, on the same GPU: within PyTorch's
    own bound 0.00025·√K (measured on an H200: 7.5e-5, 1.3e-4, 1.3e-4 for K = 64, 256, 1024)."""
    from cp_debug.backends.pytorch.torch_fp8 import fp8_scale, scaled_linear, to_e4m3

    g = torch.Generator().manual_seed(0)
    for k in (64, 256, 1024):
        x, w = torch.randn(128, k, generator=g).cuda(), torch.randn(64, k, generator=g).cuda()
        sx, sw = (torch.tensor(fp8_scale(float(t.abs().max())), device="cuda") for t in (x, w))
        x8, w8 = to_e4m3(x, sx), to_e4m3(w, sw)
        y = scaled_linear(x8, w8, sx, sw, None)
        with _no_tf32():
            emulated = torch.nn.functional.linear(x8.float() * sx, w8.float() * sw)
        rel = float((y - emulated).norm() / emulated.norm())
        print(f"K={k}: FP8 GEMM vs emulation rel. {rel:.3g} (bound 0.00025·√K = {0.00025 * k ** 0.5:.3g})")
        assert rel < 0.00025 * k ** 0.5


@needs_fp8_gpu
def test_cuda_bisect_says_it_ran_on_fp8_hardware(tmp_path):
    proc, report = _bisect("block", tmp_path, "torch-cuda,torch-cuda-fp8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["precision"]["torch-cuda-fp8"]["notes"][0].split(": ", 1)[-1].startswith("ran on FP8 hardware")
    assert "ran on FP8 hardware: 4 of 5 layers as FP8 GEMMs" in " ".join(proc.stdout.split())


class _no_tf32:
    """float32 matmuls without TF32 for the emulation (restored after)."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved
