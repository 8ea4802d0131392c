"""A small CNN with a planted FP16 overflow, for the kit of any model (`trt-kit --torch` / `--onnx`): `boost`, a
1x1 convolution whose weights are 20000, takes values of a few units to ~1e5 (beyond FP16's 65504), and `shrink`
brings them back down, so FP32 is healthy and FP16 overflows at `boost` and nowhere before it. `build()` is
`--torch`'s FILE.py:FUNC; `export_dynamic(path)` writes the ONNX file with a dynamic batch axis (`--onnx`)."""

from __future__ import annotations

import torch


class Planted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.boost = torch.nn.Conv2d(8, 8, 1)
        self.shrink = torch.nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            self.boost.weight.fill_(20000.0)
            self.boost.bias.zero_()
            self.shrink.weight.mul_(1e-4)

    def forward(self, x):
        return self.shrink(torch.relu(self.boost(self.act(self.stem(x)))))


def build():
    torch.manual_seed(0)
    return Planted().eval(), (torch.randn(1, 3, 16, 16),)


def export_dynamic(path) -> None:
    """The module as an ONNX file whose input `x` and output have a dynamic batch axis (TorchScript exporter)."""
    module, example = build()
    torch.onnx.export(module, example, str(path), input_names=["x"], output_names=["y"], dynamo=False,
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
