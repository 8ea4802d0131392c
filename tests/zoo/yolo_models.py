"""ultralytics' YOLOv8n as users deploy it (issue 69), built from its yaml with random weights (no download), for
`--torch tests/zoo/yolo_models.py:build_*`. Random weights leave its activations vanishing (|x| ~1e-9 by layer 21,
below float16's smallest subnormal), which no trained detector has: the BatchNorm statistics are taken from random
images first, as training would, so the healthy model's values are O(1)."""

from __future__ import annotations

import torch

SIZE = 64


def _recalibrated(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
    model.train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(2, 3, SIZE, SIZE, generator=g))
    return model.eval()


def build_yolo():
    """YOLOv8n (the Detect head's outputs as the model returns them: a tensor and a list), 64×64 input."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = _recalibrated(DetectionModel("yolov8n.yaml", verbose=False))
    return model, (torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)),)


def build_yolo_planted():
    """YOLOv8n with the first bottleneck of layer 6's C2f writing beyond float16's range (its conv's weights ×3e4;
    the exporter folds the conv with its BatchNorm, whose row holds the pair)."""
    model, example = build_yolo()
    with torch.no_grad():
        model.model[6].m[0].cv1.conv.weight.mul_(3e4)
    return model, example
