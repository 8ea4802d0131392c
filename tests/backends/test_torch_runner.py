"""TorchRunner: copies the module, probes (stored or streamed), output mapping, real FP16/BF16, local runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cp_debug.backends.pytorch.torch_runner import TorchRunner
from cp_debug.errors import BackendUnavailableError, BadInputError
from cp_debug.backends.spec import BackendSpec


def test_caller_module_untouched(tiny):
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch-cpu-fp16"),
                     probe_modules=["c1"]) as r:
        r.infer({"x": tiny.x})
    for k, v in tiny.module.state_dict().items():
        assert v.dtype == before[k].dtype
        assert torch.equal(v, before[k])
    assert all(not m._forward_hooks for m in tiny.module.modules())
    assert not tiny.module.training


def test_probes_and_captured_inputs(tiny):
    with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch"), probe_modules=["c1", "up"],
                     capture_inputs=True) as r:
        out = r.infer({"x": tiny.x})
    assert list(out) == ["out", "mean", "c1", "c1:in0", "up", "up:in0"]
    np.testing.assert_array_equal(out["c1:in0"], tiny.x)
    with torch.no_grad():
        expect = tiny.module.c1(torch.from_numpy(tiny.x)).numpy()
    np.testing.assert_allclose(out["c1"], expect, rtol=0, atol=1e-6)
    assert out["up"].shape == (1, 8, 32, 32) and out["up"].dtype == np.float32


def test_streaming_probes_are_not_kept(tiny):
    seen = {}
    with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch-cpu-bf16"), probe_modules=["c2"],
                     on_probe=lambda name, arr: seen.__setitem__(name, arr)) as r:
        out = r.infer({"x": tiny.x})
    assert list(out) == ["out", "mean"]
    assert list(seen) == ["c2"] and seen["c2"].dtype == np.float32


def test_unknown_probe_module(tiny):
    r = TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch"), probe_modules=["c9"])
    with pytest.raises(BadInputError, match="unknown probe module.*'c9'"):
        r.activate()


def test_run_submodule_matches_probe(tiny):
    for spec, atol in (("torch", 0.0), ("torch-cpu-fp16", 0.0)):
        with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse(spec), probe_modules=["c2"],
                         capture_inputs=True) as r:
            out = r.infer({"x": tiny.x})
            alone = r.run_submodule("c2", (out["c2:in0"],))
            np.testing.assert_allclose(alone, out["c2"], atol=atol, rtol=0)
            with pytest.raises(BadInputError, match="unknown submodule"):
                r.run_submodule("nope", (out["c2:in0"],))


class _Outputs(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, a, n):
        y = self.lin(a)
        if self.kind == "dict":
            return {"score": y.sigmoid(), "count": n * 2}
        return y, [y.sum(), n * 2]


def test_output_mapping():
    a = np.ones((2, 3), np.float32)
    n = np.array([3], np.int64)
    m = _Outputs("dict")
    with TorchRunner(m, ["a", "n"], ["count", "score"], BackendSpec.parse("torch")) as r:
        out = r.infer({"a": a, "n": n})
        assert out["count"].dtype == np.int64 and out["count"][0] == 6  # integers keep their dtype
        assert out["score"].dtype == np.float32
    with TorchRunner(_Outputs("tuple"), ["a", "n"], ["y", "s", "c"], BackendSpec.parse("torch-cpu-fp16")) as r:
        out = r.infer({"a": a, "n": n})
        assert out["y"].shape == (2, 3) and out["s"].shape == () and out["y"].dtype == np.float32
    with TorchRunner(_Outputs("tuple"), ["a", "n"], ["y", "s"], BackendSpec.parse("torch")) as r:
        with pytest.raises(BadInputError, match="returned 3 tensor"):
            r.infer({"a": a, "n": n})


def test_bad_feeds(tiny):
    with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch")) as r:
        with pytest.raises(BadInputError, match="unknown input name.*inputs are x"):
            r.infer({"x": tiny.x, "z": tiny.x})
        with pytest.raises(BadInputError, match="missing input"):
            r.infer({})
        with pytest.raises(BadInputError, match="dtype"):
            r.infer({"x": np.array(["a"], dtype=object)})


def test_fp16_is_real_float16_arithmetic():
    lin = torch.nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.fill_(1000.0)
        lin.bias.zero_()
    x = np.full((1, 4), 100.0, np.float32)  # 4 · 100 · 1000 = 4e5 > 65504
    with TorchRunner(lin, ["x"], ["y"], BackendSpec.parse("torch")) as r:
        assert np.isfinite(r.infer({"x": x})["y"]).all()
    with TorchRunner(lin, ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        assert np.isinf(r.infer({"x": x})["y"]).all()
        rep = r.precision_report()
    assert rep.honest and "float16" in rep.notes[0]
    # rounding is visible: 1 + 2^-12 is not a float16
    ident = torch.nn.Identity()
    with TorchRunner(ident, ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        assert r.infer({"x": np.array([1 + 2**-12], np.float32)})["y"][0] == 1.0


class _UpcastsInside(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.b.float()(self.a(x).float())  # forces the second layer to float32: not an FP16 run


def test_precision_report_sees_layers_that_ran_float32():
    with TorchRunner(_UpcastsInside(), ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        r.infer({"x": np.ones((1, 3), np.float32)})
        rep = r.precision_report()
    assert rep.effective == "mixed" and any("float32" in n for n in rep.notes)


def test_torch_cuda_unavailable_here(tiny):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch-cuda-fp16")).activate()


class _NoHalfKernel(torch.nn.Module):
    def forward(self, x):
        if x.dtype == torch.float16:
            raise RuntimeError('"some_op" not implemented for \'Half\'')
        return x


def test_missing_reduced_precision_kernel_is_backend_unavailable():
    with TorchRunner(_NoHalfKernel(), ["x"], ["y"], BackendSpec.parse("torch-cpu-fp16")) as r:
        with pytest.raises(BackendUnavailableError, match="no fp16 kernel"):
            r.infer({"x": np.ones(2, np.float32)})


@pytest.mark.gpu
def test_cuda_probes_reach_on_probe_through_one_read_only_host_buffer(tiny):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch-cuda"),
                     probe_modules=["c1", "c2", "up"]) as r:
        whole = r.infer({"x": tiny.x})
    seen, lent = {}, []

    def on_probe(name, arr):
        assert not arr.flags.writeable  # lent: the consumer copies what it keeps
        lent.append(arr)
        seen[name] = arr.copy()

    with TorchRunner(tiny.module, ["x"], ["out", "mean"], BackendSpec.parse("torch-cuda"),
                     probe_modules=["c1", "c2", "up"], on_probe=on_probe) as r:
        r.infer({"x": tiny.x})
    for name in ("c1", "c2", "up"):
        np.testing.assert_array_equal(seen[name], whole[name])  # what the hooks lent is what they produced
    # one buffer: c1 and c2 have the same size, so c2 was written where c1 had been
    assert np.shares_memory(lent[0], lent[1])


class _Tied(torch.nn.Module):
    """An embedding tied to its output projection, a buffer, a frozen parameter with an attribute of its own."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, 4)
        self.out = torch.nn.Linear(4, 7, bias=False)
        self.out.weight = self.emb.weight
        self.norm = torch.nn.BatchNorm1d(4)
        self.scale = torch.nn.Parameter(torch.full((4,), 0.5), requires_grad=False)
        self.scale.note = "kept"

    def forward(self, ids):
        return self.out(self.norm(self.emb(ids)) * self.scale)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_runner_s_copy_is_made_on_its_device_and_equals_a_deep_copy(device):
    from cp_debug.backends.pytorch.torch_tensors import module_copy_on

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    src = _Tied().eval()
    ids = torch.tensor([[1, 2, 3, 6]])
    copied = module_copy_on(src, torch.device(device))
    assert copied.out.weight is copied.emb.weight  # still tied
    assert copied.emb.weight is not src.emb.weight and copied.emb.weight.device.type == device
    assert copied.norm.running_var.device.type == device and src.emb.weight.device.type == "cpu"
    assert not copied.scale.requires_grad and copied.emb.weight.requires_grad and copied.scale.note == "kept"
    with torch.no_grad():
        expected = copy.deepcopy(src).to(device)(ids.to(device))
        assert torch.equal(copied(ids.to(device)), expected)
        before = src.emb.weight.clone()
        copied.emb.weight.add_(1.0)  # the copy is its own: the source is untouched
        assert torch.equal(src.emb.weight, before)
