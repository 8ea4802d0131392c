"""MediaPipe's iris landmark model (`mediapipe/modules/iris_landmark/iris_landmark.tflite` in the mediapipe 0.10.14
wheel, Apache-2.0), converted as a user converts it: `tflite2onnx 0.4.1` (a valid opset-11 file, 171 nodes: 81 Conv,
53 PRelu, 26 Add; input `input_1` NCHW 1×3×64×64 RGB in [-1, 1]; outputs `output_eyes_contours_and_brows` 1×213 (71
points) and `output_iris` 1×15: the iris centre and four points on its rim, x, y, z in the crop's pixels). Tried as
a new user (docs/trained-models.md, eleventh stop); not stored (2.6 MB).

The application: MediaPipe's iris tracking reads the iris centre in pixels (its depth from the iris's size, the
gaze); the decision here is that centre within 1 px of the reference's (`iris_metric`, the share of eyes). The eyes
are drawn here (a skin tone, the eye's white ellipse, an iris disc with its pupil, a brow): the FP32 file follows the
drawn iris (moved 6 px, its centre moves 5.1–6.8 px)."""

from __future__ import annotations

import numpy as np


def draw(seed: int) -> np.ndarray:
    """One eye drawn (seed `seed`), as the model reads it: 1×3×64×64 float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    img = np.ones((64, 64, 3), np.float32) * rng.uniform([0.55, 0.4, 0.3], [0.95, 0.8, 0.7])
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    cx, cy = 32 + rng.uniform(-3, 3), 32 + rng.uniform(-2, 2)
    ax, ay = rng.uniform(17, 23), rng.uniform(7, 11)
    eye = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
    img[eye] = rng.uniform(0.85, 0.97)
    ix, iy, r = cx + rng.uniform(-8, 8), cy + rng.uniform(-2, 2), rng.uniform(6, 9)
    iris = ((xx - ix) ** 2 + (yy - iy) ** 2 < r ** 2) & eye
    img[iris] = rng.uniform([0.1, 0.1, 0.05], [0.5, 0.45, 0.35])
    img[((xx - ix) ** 2 + (yy - iy) ** 2 < (r * 0.4) ** 2) & eye] = 0.03
    brow = (np.abs(yy - (cy - ay - 6) - 0.01 * (xx - cx) ** 2) < 1.5) & (np.abs(xx - cx) < ax)
    img[brow] *= 0.4
    return (np.clip(img, 0, 1) * 2 - 1).transpose(2, 0, 1)[None].astype(np.float32)


def iris_metric(outputs, reference, label=None) -> float:
    """The share of eyes whose iris centre lies within 1 px of the reference's."""
    a, b = (np.asarray(d["output_iris"], np.float32).reshape(-1, 5, 3) for d in (outputs, reference))
    return float(np.mean(np.hypot(*(a[:, 0, :2] - b[:, 0, :2]).T) <= 1.0))
