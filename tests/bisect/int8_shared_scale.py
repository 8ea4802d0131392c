"""A tiny detector head whose output concatenates pixel boxes (0–320) with class scores (0–1): quantized per tensor
by ONNX Runtime's `quantize_static`, one scale covers the Concat (and the Reshape, Transpose and graph output after
it), a step of ~0.74 that holds every score in one level. `kept` is the application's decision: the detections whose
class score passes 0.5 (the reference keeps none on this input; the file keeps all 128)."""

from __future__ import annotations

import torch


class Det(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.box = torch.nn.Conv2d(16, 4, 1)
        self.cls = torch.nn.Conv2d(16, 2, 1)

    def forward(self, x):
        f = self.backbone(x)
        boxes = torch.sigmoid(self.box(f)) * 320.0
        scores = torch.sigmoid(self.cls(f))
        return torch.cat([boxes, scores], dim=1).flatten(2).transpose(1, 2)


def build():
    torch.manual_seed(0)
    return Det().eval(), (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)


def kept(outputs, reference, label=None) -> float:
    """The detections the application keeps: a class score above 0.5."""
    dets = next(iter(outputs.values()))
    return float((dets[..., 4:] > 0.5).sum())
