"""An inference BatchNorm2d run with its rows as channels gives the numbers torch's own BatchNorm gives, or the
module's own forward runs (`backends/pytorch/torch_batchnorm.py`): checked on the CPU's kernels here, on cuDNN's on a
GPU
(the gpu tests: the demo preset's backbone/neck/head through a torch-cuda runner)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cp_debug.backends.pytorch import torch_batchnorm
from cp_debug.backends.pytorch.torch_batchnorm import split_rows


def _net(seed: int = 0) -> torch.nn.Module:
    """Conv → BN → ReLU twice, BN statistics and affine values away from their initial ones."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8, eps=1e-3),
                              torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU()).eval()
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.3, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return net


def _forwards(net) -> list:
    return [m.forward for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_a_model_split_gives_its_own_bits_and_says_what_ran_split():
    net = _net()
    split = copy.deepcopy(net)
    assert split_rows(split, devices=("cpu",)) == 2
    x = torch.randn(2, 3, 192, 176)  # planes of 33792 elements: past MIN_PLANE
    with torch.no_grad():
        want, got, again = net(x), split(x), split(x)
    assert torch.equal(got, want) and torch.equal(again, want)
    for fwd in _forwards(split):
        (key, agreed), = fwd.agreed.items()
        assert key[0] == (2, 8, 192, 176)
        # where the CPU's kernel agreed, the second call ran split without comparing again
        assert fwd.split_calls == (2 if agreed else 0)


def test_where_it_may_not_the_modules_own_forward_runs():
    net = _net()
    split_rows(net, devices=("cpu",))
    bn = net[1]
    small = torch.randn(1, 8, 64, 64)  # a plane of 4096 elements: below MIN_PLANE
    big = torch.randn(1, 8, 192, 192)
    with torch.no_grad():
        bn(small)
        bn(big.to(memory_format=torch.channels_last))  # not NCHW-contiguous
    bn(big)  # autograd on
    net.train()
    with torch.no_grad():
        bn(big)
    assert bn.forward.agreed == {} and bn.forward.split_calls == 0
    cuda_only = _net()
    assert split_rows(cuda_only) == 2  # the default: CUDA inputs only
    with torch.no_grad():
        cuda_only(torch.randn(1, 3, 192, 192))
    assert all(f.agreed == {} for f in _forwards(cuda_only))


def test_a_shape_whose_split_differs_keeps_the_modules_own_forward(monkeypatch):
    """Were a kernel to give other bits for the rows (a fault put into the split's result here, one ulp), the
    first call of the shape returns the module's own numbers and the shape never runs split again."""
    real = torch_batchnorm._RowSplit._split

    def off_by_an_ulp(self, x, torch_):
        y = real(self, x, torch_)
        return torch_.nextafter(y, torch_.full_like(y, np.inf))

    monkeypatch.setattr(torch_batchnorm._RowSplit, "_split", off_by_an_ulp)
    net = _net()
    split = copy.deepcopy(net)
    split_rows(split, devices=("cpu",))
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        want = net(x)
        assert torch.equal(split(x), want) and torch.equal(split(x), want)
    for fwd in _forwards(split):
        assert list(fwd.agreed.values()) == [False] and fwd.split_calls == 0


def test_changed_values_are_repeated_again_and_subclasses_keep_their_forward():
    net = _net()
    split = copy.deepcopy(net)
    split_rows(split, devices=("cpu",))
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        split(x)
        for m in (net, split):  # the same change to both: a value changed in place after the first call
            m[4].running_mean.add_(0.25)
        assert torch.equal(split(x), net(x))

    class OwnNorm(torch.nn.BatchNorm2d):
        pass

    own = torch.nn.Sequential(OwnNorm(4), torch.nn.BatchNorm2d(4))
    assert split_rows(own, devices=("cpu",)) == 1 and "forward" not in vars(own[0])


@pytest.mark.gpu
@pytest.mark.needs("cuda")
def test_a_cuda_runners_batchnorms_run_split_and_give_the_modules_own_bits():
    """The demo preset's backbone/neck/head (BN after every conv) through torch-cuda: its outputs and probes equal
    the same module run plainly on the card, and its BN modules ran split (cuDNN agreed)."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.determinism import Determinism
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    bb = centerpoint_subject("demo").stages[1]
    rs = np.random.RandomState(0)
    feed = {"spatial_features": np.maximum(rs.randn(1, bb.example_inputs[0].shape[1], 256, 256), 0)
            .astype(np.float32)}
    runner = make_runner(BackendSpec.parse("torch-cuda"), torch_module=bb.module, input_names=bb.input_names,
                         output_names=bb.output_names, probe_modules=("pts_backbone.blocks.0",))
    with runner as r:
        got = r.infer(feed)
        assert r.settings()["batch_norm_rows_as_channels"] > 0
        ran = [f.split_calls for f in _forwards(r._module) if hasattr(f, "split_calls")]
    assert sum(ran) > 0
    plain = copy.deepcopy(bb.module).cuda().eval()
    det = Determinism()
    with det.apply_torch("cuda"), torch.no_grad():
        want = plain(torch.from_numpy(feed["spatial_features"]).cuda())
    for name, value in zip(bb.output_names, want):
        assert np.array_equal(got[name], value.cpu().numpy()), name
