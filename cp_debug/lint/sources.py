"""The facts an input gives, under one set of names, each with where it came from (`Facts`), and what every recipe's
lint reads the same way: the node's BEV grid of a range and voxel size, an ONNX tensor's dims. A recipe's own facts
(its config, its node's parameter files, its deployed files) are its `lint` plug-in's: CenterPoint's in
`recipes/centerpoint/lint_sources.py`, TransFusion-L's in `recipes/transfusion/lint_sources.py`.
"""

from __future__ import annotations

import math

import numpy as np

from cp_debug.lint.findings import Fact

Facts = dict[str, Fact]


def node_grid(point_cloud_range, voxel_size) -> tuple[int, int]:
    """(nx, ny) as the node computes them: float32 (max - min) / voxel_size, truncated (not rounded)."""
    pcr = np.asarray(point_cloud_range, dtype=np.float32)
    vs = np.asarray(voxel_size, dtype=np.float32)
    g = (pcr[3:5] - pcr[0:2]) / vs[0:2]
    return int(math.floor(float(g[0]))), int(math.floor(float(g[1])))


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]
