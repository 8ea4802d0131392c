"""Faults users report from an export that changes what the model computes (issue 69 item 3), each planted at a known
module with a healthy twin: a nearest Resize rounding its source indices otherwise than PyTorch, a floor division
the TorchScript exporter writes as a truncating integer Div, a tiny `log(x + 1e-10)` guard the dynamo exporter's
optimizer drops, and timm ConvNeXt's layer scale (1e-6) underflowing in FP16.
Each `build_*` returns (module, example_inputs) as `cpdebug bisect --torch FILE:build_*` takes it."""

from __future__ import annotations

import torch
from torch import nn


def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


class _NearestCeil(torch.autograd.Function):
    """PyTorch's nearest upsampling (source index floor(dst / 2)), exported as a Resize that rounds half up
    (`nearest_mode=round_prefer_ceil`), as a custom op's symbolic may write it."""

    @staticmethod
    def forward(ctx, x):
        return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")

    @staticmethod
    def symbolic(g, x):
        scales = g.op("Constant", value_t=torch.tensor([1.0, 1.0, 2.0, 2.0]))
        return g.op("Resize", x, g.op("Constant", value_t=torch.tensor([], dtype=torch.float32)), scales,
                    mode_s="nearest", coordinate_transformation_mode_s="asymmetric",
                    nearest_mode_s="round_prefer_ceil")


class Upsampler(nn.Module):
    def __init__(self, planted: bool):
        super().__init__()
        self.planted = planted
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")

    def forward(self, x):
        return _NearestCeil.apply(x) if self.planted else self.up(x)


def _decoder(planted: bool):
    _seeded()
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Upsampler(planted), nn.Conv2d(4, 2, 3, padding=1)).eval()
    return net, (torch.randn(1, 3, 8, 8),)


def build_resize_planted():
    """Conv → nearest ×2 upsampling whose exported Resize rounds x.5 up (PyTorch floors) → Conv."""
    return _decoder(True)


class Bucketize(nn.Module):
    """Integer buckets of a signed value: `q // 3` on int64 (aten::floor_divide), which the TorchScript exporter
    writes as ONNX's integer Div, truncating toward zero where PyTorch floors. `trunc`: the healthy twin."""

    def __init__(self, trunc: bool = False):
        super().__init__()
        self.trunc = trunc

    def forward(self, x):
        q = (x * 10).long()
        b = torch.div(q, 3, rounding_mode="trunc") if self.trunc else q // 3
        return b.float() * 0.1


def _buckets(trunc: bool):
    _seeded()
    return nn.Sequential(nn.Linear(8, 16), Bucketize(trunc), nn.Linear(16, 4)).eval(), (torch.randn(2, 8),)


def build_floordiv_planted():
    return _buckets(False)


class LogGuard(nn.Module):
    """log(p + 1e-10): the guard keeps log finite where p is 0 (a ReLU's zeros). The dynamo exporter's optimizer
    takes 1e-10 for 0 and drops the Add; a guard of 1e-3 survives (the healthy twin)."""

    def __init__(self, guard: float = 1e-10):
        super().__init__()
        self.guard = guard

    def forward(self, p):
        return torch.log(p + self.guard)


def _log_net(guard: float):
    _seeded()
    return (nn.Sequential(nn.Linear(8, 16), nn.ReLU(), LogGuard(guard), nn.Linear(16, 4)).eval(),
            (torch.randn(2, 8),))


def build_removed_planted():
    return _log_net(1e-10)


def build_convnext():
    """timm's convnext_atto (random weights, 10 classes, 64×64): every block's layer scale gamma is 1e-6 at init,
    which float16 holds only as a subnormal."""
    import timm

    _seeded()
    return timm.create_model("convnext_atto", pretrained=False, num_classes=10).eval(), (torch.randn(1, 3, 64, 64),)


def build_export_healthy():
    """The three healthy twins in one model: PyTorch's own nearest Upsample, a truncating integer division written
    as such, and a log guard of 1e-3, which every exporter keeps."""
    _seeded()
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Upsampler(False), nn.Flatten(), nn.Linear(256, 8),
                        Bucketize(trunc=True), nn.ReLU(), LogGuard(1e-3), nn.Linear(8, 4)).eval()
    return net, (torch.randn(1, 3, 4, 4),)


def onnx_with_inputs(net, inputs, folder) -> tuple:
    """`net` as a user's dynamo ONNX file in `folder` and its example inputs as an .npz keyed by the file's input
    names: (model path, inputs path), as `cpdebug bisect --onnx … --inputs …` takes them."""
    import numpy as np
    import onnx

    path = folder / "model.onnx"
    torch.onnx.export(net, inputs, dynamo=True).save(str(path))
    names = [i.name for i in onnx.load(str(path)).graph.input]
    np.savez(folder / "x.npz", **{n: t.numpy() for n, t in zip(names, inputs)})
    return path, folder / "x.npz"
