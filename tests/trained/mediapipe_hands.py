"""MediaPipe's hand models (the mediapipe 0.10.14 wheel, Apache-2.0), converted as a user converts them: `tflite2onnx
0.4.1` (pure Python, the `tflite` package), as BlazeFace and the iris model were (docs/trained-models.md, tenth stop,
2026-12-01). Tried as a new user.

- `hand_recrop` (`mediapipe/modules/holistic_landmark/hand_recrop.tflite`, 124 KB → `tests/data/trained/
  hand_recrop.onnx`, 124 KB, opset 11: 63 nodes, 33 Conv, 13 PRelu; input `input_1` NCHW 1×3×256×256 RGB in [0, 1];
  output `output_crop` 1×4×1×1: two points in the crop's pixels, the hand's centre and the point that sets the
  re-crop's size and rotation). MediaPipe Holistic re-crops the hand from them; the decision here is both points
  within 2 px of the reference's (`crop_metric`). The FP32 file is stable on the hands drawn here: an input noise
  of 1e-4 moves the points ≤ 0.05 px, a noise of one 8-bit pixel step (0.004) ≤ 2.2 px.
- `hand_landmark_lite` (`mediapipe/modules/hand_landmark/hand_landmark_lite.tflite`, 2.1 MB, its float16 weights
  widened: a 4.1 MB ONNX file, not stored; 97 nodes: 47 Conv, 32 Clip (ReLU6), 4 Gemm; input 1×3×224×224 in [0, 1];
  outputs `Identity` 21 landmarks × (x, y, z) in pixels, `Identity_1` the hand's presence and `Identity_2` its
  handedness, both sigmoids, `Identity_3` world landmarks). The decision (`hand_metric`): the presence at 0.5 and,
  where the reference finds a hand, the handedness at 0.5. The landmarks are no decision on drawn hands: the FP32
  file moves them by up to 4 px for an input noise of 1e-4 (25 px for 1e-3).

The hands are drawn here (a palm and five fingers, some folded, in a skin tone on a plain ground with noise), as a
camera frame reaches the model: 8-bit pixels read as x / 255."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RECROP = Path(__file__).resolve().parents[1] / "data" / "trained" / "hand_recrop.onnx"
CROP_PX = 2.0  # the re-crop's points within 2 px of the reference's


def _capsule(xx, yy, x0, y0, x1, y1, r):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 < r * r


def draw(seed: int, size: int = 256) -> np.ndarray:
    """One hand drawn (seed `seed`) in a `size`-px square: 1×3×size×size float32, 8-bit levels in [0, 1]."""
    rng = np.random.default_rng(seed)
    s = size / 224
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.ones((size, size, 3), np.float32) * rng.uniform(0.1, 0.9, 3)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    skin = rng.uniform([0.55, 0.35, 0.25], [0.95, 0.75, 0.6])
    cx, cy = (112 + rng.uniform(-10, 10)) * s, (140 + rng.uniform(-10, 10)) * s
    rot = rng.uniform(-0.4, 0.4)
    mask = (((xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)) / (38 * s)) ** 2 + \
           ((-(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)) / (44 * s)) ** 2 < 1
    for k, (ang, ln) in enumerate(zip([-1.2, -0.45, -0.15, 0.15, 0.45], [55, 80, 88, 82, 65])):
        a = ang + rot + rng.uniform(-0.15, 0.15) - np.pi / 2
        bx, by = cx + 36 * s * np.cos(a), cy + 40 * s * np.sin(a)
        length = ln * s * rng.uniform(0.7, 1.1) * (0.3 if rng.uniform() < 0.15 else 1)  # a finger folded at times
        mask |= _capsule(xx, yy, bx, by, bx + length * np.cos(a), by + length * np.sin(a), (9 if k else 11) * s)
    shade = 1 - 0.15 * ((xx - cx) / (80 * s)) ** 2
    img[mask] = skin * shade[mask, None]
    img = np.round(np.clip(img, 0, 1) * 255) / 255  # a camera frame: 8-bit pixels read as x / 255
    return img.transpose(2, 0, 1)[None].astype(np.float32)


def crop_metric(outputs, reference, label=None) -> float:
    """The share of hands whose two re-crop points both lie within 2 px of the reference's."""
    a, b = (np.asarray(d["output_crop"], np.float32).reshape(-1, 2, 2) for d in (outputs, reference))
    return float(np.mean(np.hypot(*(a - b).transpose(2, 0, 1)).max(-1) <= CROP_PX))


def hand_metric(outputs, reference, label=None) -> float:
    """The share of images decided as the reference: the hand's presence at 0.5 and, where the reference finds one,
    its handedness at 0.5."""
    pa, ha, pb, hb = (np.asarray(d[k], np.float32).reshape(-1) > 0.5 for d in (outputs, reference)
                      for k in ("Identity_1", "Identity_2"))
    return float(np.mean((pa == pb) & (~pb | (ha == hb))))


def convert(tflite: Path, out: Path) -> Path:
    """`tflite2onnx.convert` as a user runs it (the tflite2onnx and tflite packages: not the test extra)."""
    import tflite2onnx

    tflite2onnx.convert(str(tflite), str(out))
    return out


def landmark_model(tmp: Path) -> Path:
    """`hand_landmark_lite` converted from the installed mediapipe wheel into `tmp` (skipped without mediapipe
    0.10.14 or tflite2onnx: `pip install --no-deps mediapipe==0.10.14 tflite2onnx==0.4.1 tflite==2.18.0`)."""
    import importlib.util
    from importlib import metadata

    import pytest

    if importlib.util.find_spec("tflite2onnx") is None:
        pytest.skip("tflite2onnx is not installed: pip install --no-deps tflite2onnx==0.4.1 tflite==2.18.0")
    try:
        src = Path(str(metadata.distribution("mediapipe").locate_file(
            "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite")))
    except metadata.PackageNotFoundError:
        pytest.skip("mediapipe is not installed: pip install --no-deps mediapipe==0.10.14")
    if not src.is_file():
        pytest.skip(f"this mediapipe wheel does not ship {src.name} (0.10.14 does)")
    return convert(src, tmp / "hand_landmark_lite.onnx")
