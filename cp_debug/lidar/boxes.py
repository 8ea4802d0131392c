"""3D boxes as every LiDAR recipe hands them over (`Detections`), and the circle NMS both detectors' deployments
run (mmdet3d's, and Autoware's strict variant)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """boxes (N, 9) float32 [x, y, z_bottom, l, w, h, yaw, vx, vy]; scores (N,) float32; labels (N,) int64,
    sorted by descending score; cells (N,) int64: the head-map cell row * W + col each box was decoded from (its
    heatmap peak), None where the boxes were not decoded here. How well the maps define each yaw (atan2 of the rot
    head, `compare/noise.py`'s `YawTurn`): rot_norm (N,) float32, |(sin, cos)| at each box's peak, and rot_rms, the
    rot map's RMS; None where not decoded here."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = ()
    cells: np.ndarray | None = None
    rot_norm: np.ndarray | None = None
    rot_rms: float | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def count_by_class(self) -> dict[str, int]:
        names = self.class_names or tuple(str(i) for i in range(int(self.labels.max(initial=-1)) + 1))
        return {name: int((self.labels == i).sum()) for i, name in enumerate(names)}

    @classmethod
    def empty(cls, class_names: tuple[str, ...] = ()) -> "Detections":
        return cls(np.zeros((0, 9), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64), class_names)


def circle_nms(centers: np.ndarray, scores: np.ndarray, dist_sq: float, max_keep: int, *,
               strict: bool = False) -> np.ndarray:
    """mmdet3d's circle_nms: walk boxes in descending score, suppress later ones within dist_sq; stable order.
    `strict`: suppress only those strictly nearer (Autoware's circleNMS kernels: squared distance < threshold²)."""
    order = np.argsort(-scores, kind="stable")
    c = centers[order].astype(np.float32)
    d2 = (c[:, None, 0] - c[None, :, 0]) ** 2 + (c[:, None, 1] - c[None, :, 1]) ** 2
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        if len(keep) >= max_keep:
            break
        suppressed |= (d2[i] < dist_sq) if strict else (d2[i] <= dist_sq)
    return np.asarray(keep, dtype=np.int64)
