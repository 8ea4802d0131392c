"""BN fusion pairs by data flow, checks widths, and puts a ConvTranspose2d's BN scale on weight dim 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cp_debug.errors import BadInputError
from cp_debug.quant.bn_fusion import ConvBnPair, find_conv_bn_pairs, fuse_module
from cp_debug.recipes.centerpoint.ptq_checkpoint import fuse_centerpoint


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


class Crossed(nn.Module):
    """Modules registered in an order that is NOT the data flow: conv_a feeds bn_b and conv_b feeds bn_a,
    and each BN sits right after the other conv in registration order (module-order pairing gets both wrong)."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(16)
        self.conv_b = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)

    def forward(self, x):
        x = torch.relu(self.bn_b(self.conv_a(x)))
        return self.bn_a(self.conv_b(x))


def test_pairs_follow_data_flow_not_module_order():
    model = Crossed().eval()
    _randomize_bn(model)
    pairs = find_conv_bn_pairs(model)
    assert pairs == [ConvBnPair("conv_a", "bn_b"), ConvBnPair("conv_b", "bn_a")]
    fused, _ = fuse_module(model)
    assert isinstance(fused.bn_a, nn.Identity) and isinstance(fused.bn_b, nn.Identity)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


class Misfit(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 256, 1, bias=False)
        self.norm = nn.BatchNorm2d(128)

    def forward(self, x):
        return self.norm(self.conv(x))


def test_a_pair_that_does_not_fit_names_both_modules():
    with pytest.raises(BadInputError) as err:
        find_conv_bn_pairs(Misfit())
    msg = str(err.value)
    assert "conv" in msg and "norm" in msg and "256" in msg and "128" in msg and "\n" not in msg


class ConvTBn(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.up(x))


@pytest.mark.parametrize("cin,cout", [(6, 6), (5, 7)])
def test_convtranspose_bn_scale_goes_on_dim_1(cin, cout):
    model = ConvTBn(cin, cout).eval()
    _randomize_bn(model, seed=cin)
    fused, pairs = fuse_module(model)
    assert pairs == [ConvBnPair("up", "bn")]
    x = torch.randn(1, cin, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)
    # the scale multiplies output channels, weight dim 1 of [in, out, kH, kW]
    scale = model.bn.weight / torch.sqrt(model.bn.running_var + model.bn.eps)
    torch.testing.assert_close(fused.up.weight, model.up.weight * scale.view(1, -1, 1, 1))


def test_centerpoint_fusion_matches_the_fused_layout(tiny_cfg, tiny_fp32):
    from cp_debug.models.centerpoint.fused import build_fused_model
    from cp_debug.models.centerpoint.model import BackboneNeckHeadStage

    fused, pairs = fuse_centerpoint(tiny_fp32)
    assert len(pairs) == 26  # 16 backbone + 3 neck + shared conv + 6 head ConvModules
    assert list(fused.state_dict()) == list(build_fused_model(tiny_cfg).state_dict())
    x = torch.randn(1, 32, 160, 160).relu()
    with torch.no_grad():
        for a, b in zip(BackboneNeckHeadStage(fused)(x), BackboneNeckHeadStage(tiny_fp32)(x)):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
