"""Boxes of one sample and the exact conversion between our box layout and nuScenes' results layout.

Ours (the decoder's and mmdet3d's LiDAR boxes): [x, y, z_bottom, l, w, h, yaw, vx, vy], l along the heading.
nuScenes: translation [x, y, z_centre], size [w, l, h], rotation [w, x, y, z] (a quaternion about z),
velocity [vx, vy]. The lidar frame is taken as the ego frame (synthetic scans and the info files we read
have no ego pose), so distances to the sensor are distances to the ego vehicle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class SampleBoxes:
    """One sample's boxes (K, 9) float [x, y, z_bottom, l, w, h, yaw, vx, vy], labels (K,) int indices into the
    class names, scores (K,) float or None for ground truth; `num_points` (K,) lidar points per ground-truth
    box where known (the devkit drops ground truth with none); `rot_norm` (K,) and `rot_rms`: how well the head
    maps define each yaw, where the boxes were decoded here (`Detections`)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    num_points: np.ndarray | None = None
    rot_norm: np.ndarray | None = None
    rot_rms: float | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 9) if np.size(self.boxes) else np.zeros((0, 9))
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if labels.shape[0] != boxes.shape[0]:
            raise BadInputError(f"{boxes.shape[0]} boxes but {labels.shape[0]} labels; give one label per box")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if scores.shape[0] != boxes.shape[0]:
                raise BadInputError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores; give one score per box")
            object.__setattr__(self, "scores", scores)
        if self.num_points is not None:
            npts = np.asarray(self.num_points, dtype=np.int64).reshape(-1)
            object.__setattr__(self, "num_points", npts if npts.shape[0] == boxes.shape[0] else None)
        if self.rot_norm is not None:
            norm = np.asarray(self.rot_norm, dtype=np.float64).reshape(-1)
            object.__setattr__(self, "rot_norm", norm if norm.shape[0] == boxes.shape[0] else None)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, with_scores: bool = True) -> "SampleBoxes":
        return cls(np.zeros((0, 9)), np.zeros((0,), np.int64), np.zeros((0,)) if with_scores else None)

    @classmethod
    def from_detections(cls, det) -> "SampleBoxes":
        """From the decoder's `Detections` (boxes, scores, labels, and how well the maps define each yaw)."""
        return cls(det.boxes, det.labels, det.scores, rot_norm=det.rot_norm, rot_rms=det.rot_rms)

    @classmethod
    def from_truth(cls, truth) -> "SampleBoxes":
        """From a frame's ground truth (`data.frames.GroundTruth`: boxes, labels, points per box)."""
        return cls(truth.boxes, truth.labels, num_points=truth.num_points)


def ground_truth(frames: Sequence, cfg) -> dict[str, SampleBoxes]:
    """{token: SampleBoxes} of the ground truth of `frames` (`data.frames.Frame`s; those without one left out)."""
    out = {}
    for f in frames:
        truth = f.truth(cfg)
        if truth is not None:
            out[f.token] = SampleBoxes.from_truth(truth)
    return out


def yaw_to_quaternion(yaw: float) -> list[float]:
    """[w, x, y, z] of a rotation by `yaw` about +z (what pyquaternion's Quaternion(axis=[0,0,1], radians=yaw)
    gives)."""
    return [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]


def quaternion_to_yaw(q) -> float:
    """Heading of the rotated +x axis, as nuscenes-devkit's quaternion_yaw computes it (any unit quaternion)."""
    w, x, y, z = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def box_to_nuscenes(box) -> dict:
    """translation / size / rotation / velocity of one of our boxes in nuScenes' layout."""
    x, y, zb, l, w, h, yaw, vx, vy = (float(v) for v in box)
    return {
        "translation": [x, y, zb + h / 2.0],
        "size": [w, l, h],
        "rotation": yaw_to_quaternion(yaw),
        "velocity": [vx, vy],
    }


def box_from_nuscenes(translation, size, rotation, velocity) -> np.ndarray:
    """Inverse of `box_to_nuscenes`: one (9,) box in our layout."""
    x, y, zc = (float(v) for v in translation)
    w, l, h = (float(v) for v in size)
    vx, vy = (float(v) for v in velocity)
    return np.array([x, y, zc - h / 2.0, l, w, h, quaternion_to_yaw(rotation), vx, vy], dtype=np.float64)
