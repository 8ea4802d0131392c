"""torchvision's MobileNetV2 (width 0.5, 10 classes, random weights, no download) for `--torch FILE:FUNC`, with one
channel ×1000 planted where per-tensor INT8 loses the others: a depthwise conv's (features.5.conv.1.0) or a
projection's (features.5.conv.2) output channel. The big channel sets its conv output's per-tensor range, most
other values round to zero, and the output's relative error — dominated by the big channel — stays small there.
`healthy` is the twin with nothing planted. `issue_84` is the issue's fix case: width 1.0 at 96×96, one depthwise
channel ×100 — whose random init also gives three ReLU6 activations of ~1e-8, whose Clips ONNX Runtime's
ClipQuantFusion drops (bisect/findings/clip_fusion.py)."""

from __future__ import annotations

import torch
import torchvision


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5).eval()


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)),)


def healthy():
    """The twin with nothing planted."""
    return _net(), _inputs()


def depthwise():
    net = _net()
    with torch.no_grad():
        net.features[5].conv[1][0].weight[7] *= 1000
    return net, _inputs()


def projection():
    net = _net()
    with torch.no_grad():
        net.features[5].conv[2].weight[3] *= 1000
    return net, _inputs()


def issue_84():
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(num_classes=10, width_mult=1.0).eval()
    with torch.no_grad():
        net.features[5].conv[1][0].weight[7] *= 100
    return net, (torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1)),)


def depthwise_deep():
    """Issue 108: width 1.0 at 96×96, the depthwise conv of features.8 with one channel ×1000. Calibrated on held-out
    samples, its blocks' own errors (each run whole, ONNX Runtime fusing across its layers) put features.17 at 4.7×
    INT8's budget, dominating nineteen blocks, while `--level all` measures its layers and finds none beyond: one
    planted fault read "diverged" at the default level and "degraded" at `--level all` before the local-fault test
    weighed a segment against the run's own errors."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(num_classes=10, width_mult=1.0).eval()
    with torch.no_grad():
        net.features[8].conv[1][0].weight[7] *= 1000
    return net, (torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1)),)
