"""The two Q/DQ ONNX files of a fake-quant CenterPoint, as `cpdebug quantize` writes them.

`pts_voxel_encoder.onnx` and `pts_backbone_neck_head.onnx` come from `recipes/centerpoint/export.export_onnx`
(same input and output names as the FP32 files) with the quantizers on; `quant.qdq_check.check_qdq` checks
each file's Q/DQ structure.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from cp_debug.errors import BadInputError
from cp_debug.quant.qdq_check import QdqSummary, check_qdq


@dataclass(frozen=True)
class QdqExport:
    voxel_encoder: QdqSummary
    backbone: QdqSummary


def export_qdq(model, cfg, out_dir: str | Path, *, sample_points=None, opset: int = 17) -> QdqExport:
    """Write `pts_voxel_encoder.onnx` and `pts_backbone_neck_head.onnx` of a fake-quant CenterPoint into
    `out_dir` (each file atomically) and check both."""
    import torch

    from cp_debug.recipes.centerpoint.export import export_onnx

    if opset < 13:
        raise BadInputError(f"per-channel Q/DQ needs opset 13 or later, not {opset}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the python-float scales, which are constants
        with torch.no_grad():
            result = export_onnx(model, cfg, out_dir, sample_points=sample_points, opset=opset)
    return QdqExport(check_qdq(result.voxel_encoder), check_qdq(result.backbone))
