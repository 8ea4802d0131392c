"""MediaPipe's BlazeFace, short range (`mediapipe/modules/face_detection/face_detection_short_range.tflite` in the
mediapipe 0.10.14 wheel, Apache-2.0; the 1.2.x wheels no longer carry it), converted as a user converts it:
`tflite2onnx 0.4.1` (pure Python, the `tflite` package) → `tests/data/trained/blazeface_short_range.onnx` (426 KB,
opset 11, its float16 weights widened to float32, input `input` NCHW 1×3×128×128 RGB in [-1, 1]; outputs
`regressors` 1×896×16, `classificators` 1×896×1: one logit per anchor). Tried as a new user (docs/trained-models.md,
tenth stop).

The application: MediaPipe's face detector keeps the anchors whose score (the sigmoid of the logit, clipped at ±100)
is at least `min_detection_confidence`, 0.5; the decision here is whether an image holds a face (`found_metric`),
or each anchor's side of 0.5 (`anchor_metric`). The faces are drawn here (a skin-toned ellipse, hair, eyes, a nose
and a mouth on a cluttered ground, blurred, with noise): the FP32 file finds each (scores 0.73–0.93; 0.06–0.13 on
the ground alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL = Path(__file__).resolve().parents[1] / "data" / "trained" / "blazeface_short_range.onnx"


def draw(seed: int) -> np.ndarray:
    """One face drawn (seed `seed`), as the model reads it: 1×3×128×128 float32 in [-1, 1]."""
    from PIL import Image, ImageDraw, ImageFilter

    r = np.random.default_rng(seed)

    def colour(lo, hi):
        return tuple(int(v) for v in r.integers(lo, hi, 3))

    im = Image.new("RGB", (128, 128), colour(30, 220))
    d = ImageDraw.Draw(im)
    for _ in range(4):  # clutter
        x, y = r.integers(0, 128, 2)
        d.rectangle([x, y, x + r.integers(5, 30), y + r.integers(5, 30)], fill=colour(0, 255))
    s = float(r.uniform(0.35, 0.7)) * 128  # the face's width
    cx, cy = r.uniform(0.35, 0.65, 2) * 128
    skin = tuple(int(v) for v in (np.array([224, 172, 140]) * r.uniform(0.45, 1.1)).clip(0, 255))
    d.ellipse([cx - s / 2, cy - s * 0.65, cx + s / 2, cy + s * 0.65], fill=skin)
    hair = colour(10, 90)
    d.chord([cx - s / 2, cy - s * 0.68, cx + s / 2, cy + s * 0.1], 180, 360, fill=hair)
    e = s * 0.09
    for side in (-1, 1):
        ex, ey = cx + side * s * 0.2, cy - s * 0.05
        d.ellipse([ex - e * 1.4, ey - e * 0.8, ex + e * 1.4, ey + e * 0.8], fill=(240, 240, 240))
        d.ellipse([ex - e * 0.6, ey - e * 0.6, ex + e * 0.6, ey + e * 0.6], fill=(40, 25, 20))
        d.line([ex - e * 1.6, ey - e * 1.8, ex + e * 1.6, ey - e * 2.0], fill=hair, width=max(1, int(e * 0.6)))
    d.polygon([(cx, cy), (cx - s * 0.06, cy + s * 0.18), (cx + s * 0.06, cy + s * 0.18)],
              fill=tuple(int(v * 0.85) for v in skin))
    d.arc([cx - s * 0.18, cy + s * 0.18, cx + s * 0.18, cy + s * 0.38], 10, 170, fill=(150, 40, 50),
          width=max(1, int(s * 0.04)))
    im = im.filter(ImageFilter.GaussianBlur(float(r.uniform(0.3, 1.2))))
    a = np.asarray(im, np.float32) + r.normal(0, 4, (128, 128, 3))
    return (a.clip(0, 255) / 127.5 - 1).transpose(2, 0, 1)[None].astype(np.float32)


def _faces(d) -> np.ndarray:
    return np.asarray(d["classificators"], np.float64) >= 0.0  # sigmoid(x) ≥ 0.5 ⇔ x ≥ 0 (the clip changes neither)


def found_metric(outputs, reference, label=None) -> float:
    """The share of images in which a face is found (any anchor at 0.5 or above) as in the reference."""
    out, ref = (_faces(d).reshape(len(_faces(d)), -1).any(axis=1) for d in (outputs, reference))
    return float(np.mean(out == ref))


def anchor_metric(outputs, reference, label=None) -> float:
    """The share of anchors on the reference's side of 0.5."""
    return float(np.mean(_faces(outputs) == _faces(reference)))
