"""CPU FP16/BF16 emulation: half storage, float32 accumulation, result rounded — bit for bit, and against
torch's own CPU half kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cp_debug.backends.pytorch.torch_runner import CPU_HALF_ENV, TorchRunner
from cp_debug.errors import BadInputError
from cp_debug.backends.spec import BackendSpec


def _conv_block():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32),
                               torch.nn.ReLU(), torch.nn.ConvTranspose2d(32, 8, 2, 2)).eval()


def _x(seed=1):
    return np.random.default_rng(seed).normal(size=(1, 16, 12, 12)).astype(np.float32)


def _by_hand(block, x, dtype):
    """What a GPU FP16 kernel computes: half inputs and weights, float32 accumulation, output rounded."""
    conv, bn, _, up = block
    r = lambda t: t.to(dtype).float()  # noqa: E731
    with torch.no_grad():
        y = r(torch.nn.functional.conv2d(r(torch.from_numpy(x)), r(conv.weight), r(conv.bias), padding=1))
        y = r(torch.nn.functional.batch_norm(y, r(bn.running_mean), r(bn.running_var), r(bn.weight), r(bn.bias),
                                             eps=bn.eps))
        y = torch.relu(y)
        return r(torch.nn.functional.conv_transpose2d(y, r(up.weight), r(up.bias), stride=2)).numpy()


@pytest.mark.parametrize("spec,dtype", [("torch-cpu-fp16", torch.float16), ("torch-cpu-bf16", torch.bfloat16)])
def test_emulated_is_float32_accumulation_rounded_to_half(spec, dtype):
    block, x = _conv_block(), _x()
    with TorchRunner(block, ["x"], ["y"], BackendSpec.parse(spec), probe_modules=["1"]) as r:
        out = r.infer({"x": x})
        rep = r.precision_report()
        settings = r.settings()
    np.testing.assert_array_equal(out["y"], _by_hand(block, x, dtype))
    assert rep.effective == rep.requested and rep.notes[0].startswith("emulated")
    assert settings["half_arithmetic"] == "emulated"
    # the BatchNorm probe is a half value: rounding it again changes nothing
    assert np.array_equal(out["1"], torch.from_numpy(out["1"]).to(dtype).float().numpy())


def test_emulated_agrees_with_torch_cpu_half_kernels(monkeypatch):
    block, x = _conv_block(), _x(2)
    with TorchRunner(block, ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        emulated = r.infer({"x": x})["y"]
    monkeypatch.setenv(CPU_HALF_ENV, "native")
    with TorchRunner(block, ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        native = r.infer({"x": x})["y"]
        assert r.settings()["half_arithmetic"] == "native"
        assert "natively" in " ".join(r.precision_report().notes)
    # Within one float16 ulp of the output's largest value, everywhere. Not of each element's own value: torch's
    # AVX2 kernels round their intermediate values in other places than AVX-512 ones do (seen: 4.4% of elements
    # beyond their own ulp on an AVX2 EPYC, all of them near zero, none beyond half the top ulp).
    top = float(np.spacing(np.float16(np.abs(native).max())))
    worst = float(np.abs(emulated - native).max())
    assert worst <= top, f"emulated and native half differ by {worst:.3g}, more than 1 float16 ulp ({top:.3g})"


def test_emulated_overflow_and_local_runs():
    lin = torch.nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.fill_(1000.0)
        lin.bias.zero_()
    x = np.full((1, 4), 100.0, np.float32)  # 4e5 accumulates fine in float32, the float16 result is inf
    with TorchRunner(lin, ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        assert np.isinf(r.infer({"x": x})["y"]).all()
        assert np.isinf(r.run_submodule("", (x,))).all()  # the local-error path emulates too


def test_bad_mode(monkeypatch):
    monkeypatch.setenv(CPU_HALF_ENV, "fast")
    with pytest.raises(BadInputError, match="emulated.*native"):
        TorchRunner(torch.nn.Identity(), ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")).activate()
