"""Does a candidate's divergence change the detections on the bisected scan? The end of a CenterPoint bisect.

The reference's and the candidate's head maps (the last stage's outputs) are decoded as the deployment decodes
them (sigmoid, boxes, circle NMS, score threshold: `models/centerpoint/decode.py`, in numpy: `decode_numpy`, so that a
bisect of ONNX Runtime alone imports no torch) and judged as every detector
recipe's boxes are (`lidar/box_verdict.py`: matched box to box by `compare_detections.py`, lost, added, moved,
rescored, turned).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cp_debug.lidar.box_verdict import BoxVerdict, box_grid, box_verdict


def detection_verdict(cfg) -> Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], BoxVerdict]:
    """A `Subject.detection_verdict` for preset `cfg`."""

    def verdict(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> BoxVerdict:
        from cp_debug.models.centerpoint.decode import decode_numpy

        cell, extent = box_grid(cfg)
        return box_verdict(decode_numpy(reference, cfg), decode_numpy(candidate, cfg),
                           score_threshold=cfg.score_threshold, cap=cfg.post_max_size, cell_m=cell, extent_m=extent)

    return verdict
