"""CenterPoint with BatchNorm folded into the convolutions: the structure of AWML's PTQ checkpoints.

AWML fuses BN before INT8 calibration: every Conv2d / ConvTranspose2d of the backbone, neck and head gains a
bias and its BN disappears (nn.Identity here, so the Sequential indices and all other names stay); the PFN
keeps its BN1d. A PTQ checkpoint then holds these 76 tensors plus `<conv>._input_quantizer._amax` /
`._weight_quantizer._amax` for each quantized conv (56 for the AWML recipe). Build this structure first, then
load: loading fused weights into the unfused model would silently drop the biases.
"""

from __future__ import annotations

import torch
from torch import nn

from cp_debug.models.centerpoint.centerpoint_head import ConvModule
from cp_debug.models.centerpoint.config import CenterPointConfig
from cp_debug.models.centerpoint.model import CenterPoint, build_model

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _conv_bn_pairs(model: CenterPoint) -> list[tuple[nn.Module, str, str, str]]:
    """(parent, conv attribute, bn attribute, qualified parent name) for every conv followed by a BN2d."""
    pairs = []
    for name, parent in model.named_modules():
        if name.startswith("pts_voxel_encoder"):
            continue
        if isinstance(parent, ConvModule) and isinstance(parent.bn, nn.BatchNorm2d):
            pairs.append((parent, "conv", "bn", name))
        elif isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            for (cname, conv), (bname, bn) in zip(children, children[1:]):
                if isinstance(conv, _CONVS) and isinstance(bn, nn.BatchNorm2d):
                    pairs.append((parent, cname, bname, name))
    return pairs


def _with_bias(conv: nn.Module) -> nn.Module:
    """A copy of `conv`'s layer type and geometry with a bias (weights are set by the caller)."""
    kwargs = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    if isinstance(conv, nn.ConvTranspose2d):
        return nn.ConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                  output_padding=conv.output_padding, **kwargs)
    return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, **kwargs)


def fuse_structure(model: CenterPoint) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    """Give every conv of a conv+BN pair a bias and replace the BN by Identity; returns (new conv, old conv,
    old BN) triples. Only called on a freshly built model (here, and on a meta-device one by checkpoint.py's
    shape table)."""
    out = []
    for parent, cname, bname, _ in _conv_bn_pairs(model):
        conv, bn = getattr(parent, cname), getattr(parent, bname)
        new = _with_bias(conv)
        setattr(parent, cname, new)
        setattr(parent, bname, nn.Identity())
        out.append((new, conv, bn))
    return out


def build_fused_model(cfg: CenterPointConfig) -> CenterPoint:
    """An empty (zero-bias, default-weight) BN-fused CenterPoint in eval mode, ready to load a PTQ checkpoint."""
    model = build_model(cfg, seed=0, init="mmdet3d")
    with torch.no_grad():
        for new, _, _ in fuse_structure(model):
            new.bias.zero_()
    model.is_bn_fused = True
    return model.eval()


@torch.no_grad()
def fuse_batchnorm(model: CenterPoint) -> CenterPoint:
    """A new, BN-fused copy of `model` (eval-mode BN statistics folded into conv weight and bias), as AWML
    does before calibration. `model` itself is not changed."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    fused = build_model(model.cfg, seed=0, init="mmdet3d")
    fused.load_state_dict(model.state_dict())
    for new, conv, bn in fuse_structure(fused):
        w, b = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
            transpose=isinstance(conv, nn.ConvTranspose2d),
        )
        new.weight.copy_(w)
        new.bias.copy_(b)
    fused.is_bn_fused = True
    return fused.eval()


def is_bn_fused(model: nn.Module) -> bool:
    return bool(getattr(model, "is_bn_fused", False))


def quantizable_layers(model: CenterPoint) -> list[str]:
    """Qualified names of the convs a PTQ checkpoint may carry amax buffers for (all backbone/neck/head convs)."""
    return [name for name, m in model.named_modules() if isinstance(m, _CONVS)]
