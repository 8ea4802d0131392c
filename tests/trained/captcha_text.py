"""captcha-whisperer's captcha reader (`captcha_whisperer/models/captcha_crnn.onnx` in the captcha-whisperer 0.1.0
wheel, 4.5 MB wheel, 19 MB file, MIT; exported by its author from PyTorch 2.14, opset 17): a DenseNet-style conv trunk
(24 Convs, ReLUs, the BatchNorms written as `x * scale + shift`) on a 3×60×160 BGR image in 0 … 255 (no scaling), the
feature map read as 20 steps, two LSTMs unrolled step by step (80 Gemms, 120 Sigmoids, 80 Tanhs), a MatMul to 37
classes; `logits` 20×N×37, read by greedy CTC (blank 36). Tried as a new user (docs/trained-models.md, twelfth stop).

The captchas were drawn by the `captcha` package (0.7.1, BSD; its `ImageCaptcha` at 160×60, four characters of
0-9A-Z: `draw`), which the model reads as its training style (about half read exactly; the decision here is the text
the reference reads, right or not). `ImageCaptcha` draws with `secrets` (no seed holds): the 40 judged (`draw(1, 40)`)
and the 40 that calibrate (`draw(2, 40)`) the docs' figures were measured on are stored,
`tests/data/trained/captcha_samples.npz` (uint8, 0.76 MB; `samples`). The decision (`text_metric`): the share of
captchas whose text (the package's own `decode`) is the reference's."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np


def model_path() -> Path:
    """The wheel's file, where pip put it."""
    from captcha_whisperer.recognizer import default_model_path

    return default_model_path()


SAMPLES = Path(__file__).resolve().parents[1] / "data" / "trained" / "captcha_samples.npz"


def samples() -> tuple[np.ndarray, np.ndarray]:
    """The stored captchas (module docstring), as the model reads them: the judged and the calibration's, each
    40×3×60×160 float32 (BGR, 0 … 255)."""
    with np.load(SAMPLES) as f:
        return f["judged"].astype(np.float32), f["cal"].astype(np.float32)


def draw(seed: int, count: int) -> np.ndarray:
    """`count` captchas of four characters whose texts are drawn with seed `seed` (their strokes and noise are not:
    `secrets`), as the model reads them: N×3×60×160 float32."""
    from captcha.image import ImageCaptcha
    from captcha_whisperer.preprocess import _to_bgr_chw

    random.seed(seed)  # ImageCaptcha draws with the module `random`
    gen = ImageCaptcha(width=160, height=60)
    texts = ["".join(random.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) for _ in range(count)]
    return np.stack([_to_bgr_chw(gen.generate_image(t), 60, 160) for t in texts])


def texts(logits: np.ndarray) -> list[str]:
    """The texts read from `logits` (20×N×37), by the package's greedy CTC."""
    from captcha_whisperer.recognizer import decode

    return decode(np.asarray(logits, dtype=np.float32))[0]


def text_metric(outputs, reference, label=None) -> float:
    """The share of captchas whose text is the reference's."""
    out, ref = (texts(d["logits"]) for d in (outputs, reference))
    return float(np.mean([a == b for a, b in zip(out, ref)]))
