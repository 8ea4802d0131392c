"""invisible-watermark's RivaGAN (`pip install --no-deps invisible-watermark==0.2.0`, MIT): its author's ONNX files
as the wheel ships them (`imwatermark/rivagan_encoder.onnx`, `rivagan_decoder.onnx`, exported by PyTorch 1.7, opset
10), tried as a new user (docs/trained-models.md, ninth stop).

The application (`imwatermark.rivaGan.RivaWatermark`): a frame H × W × 3 in uint8 is scaled to [-1, 1] and laid out
(1, 3, 1, H, W); the encoder adds a 32-bit watermark (`data`, the bits as 0 / 1 floats) and its output is clamped and
rounded back to uint8; the decoder reads 32 scores from a frame and a bit is set where its score is above 0.52 (the
class's `threshold`). The frames here are made here (gradients, discs, bars and a texture: no data downloads); the
even frames calibrate, the odd ones are judged. Importing imwatermark imports OpenCV and PyWavelets, which the
models do not need: the files are read by path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

THRESHOLD = 0.52  # RivaWatermark's default `threshold`
SIZE = 96
BITS = np.array([int(b) for b in f"{0xA5C3_1E7B:032b}"], dtype=np.float32)  # a 32-bit watermark


def model_path(which: str) -> Path:
    """The wheel's `rivagan_{which}.onnx` (encoder or decoder)."""
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("invisible-watermark is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / f"rivagan_{which}.onnx"


def frames(n: int = 12, size: int = SIZE) -> list[np.ndarray]:
    """`n` uint8 frames (size × size × 3): a colour gradient, discs, bars and a smoothed noise texture."""
    rng = np.random.default_rng(115)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(n):
        base = np.stack([a * xx + b * yy + c for a, b, c in rng.uniform(-0.6, 0.6, (3, 3))], -1) + 0.5
        for _ in range(rng.integers(2, 6)):  # discs
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            base[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
        if rng.uniform() < 0.5:  # bars
            base[:, (np.arange(size) // rng.integers(3, 12)) % 2 == 0] *= rng.uniform(0.5, 0.9)
        tex = rng.normal(0, 1, (size, size, 3)).astype(np.float32)
        k = np.ones(5, np.float32) / 5
        tex = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 0, tex)
        tex = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 1, tex)
        img = base + rng.uniform(0.02, 0.12) * tex
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return out


def layout(frame: np.ndarray) -> np.ndarray:
    """RivaWatermark's input layout: uint8 H × W × 3 → float32 (1, 3, 1, H, W) in [-1, 1]."""
    x = frame.astype(np.float32)[None] / 127.5 - 1.0  # (1, H, W, 3)
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)[None])


def to_uint8(wm_frame: np.ndarray) -> np.ndarray:
    """RivaWatermark.encode's output: clamp to [-1, 1], back to uint8 H × W × 3 (truncated, as its astype)."""
    x = np.clip(np.asarray(wm_frame, dtype=np.float32), -1.0, 1.0)[0, :, 0]
    return ((x.transpose(1, 2, 0) + 1.0) * 127.5).astype(np.uint8)


def _session(which: str):
    import onnxruntime as ort

    return ort.InferenceSession(str(model_path(which)), providers=["CPUExecutionProvider"])


def encoder_feeds(n: int = 12) -> list[dict[str, np.ndarray]]:
    """The encoder's inputs: each frame with the watermark."""
    return [{"frame": layout(f), "data": BITS[None].copy()} for f in frames(n)]


def decoder_feeds(n: int = 12) -> list[dict[str, np.ndarray]]:
    """The decoder's inputs: each frame watermarked by the FP32 encoder, as the application writes it (uint8)."""
    enc = _session("encoder")
    return [{"frame": layout(to_uint8(enc.run(None, f)[0]))} for f in encoder_feeds(n)]


def bit_metric(outputs, reference, label=None) -> float:
    """The decoder's decision: the share of the 32 bits (score > 0.52) that are the reference's."""
    out, ref = (np.asarray(next(iter(d.values()))) for d in (outputs, reference))
    return float(np.mean((out > THRESHOLD) == (ref > THRESHOLD)))


_DECODER = []


def _decoded(wm_frame: np.ndarray) -> np.ndarray:
    if not _DECODER:
        _DECODER.append(_session("decoder"))
    return _DECODER[0].run(None, {"frame": layout(to_uint8(wm_frame))})[0] > THRESHOLD


def watermark_metric(outputs, reference, label=None) -> float:
    """The encoder's decision: its frame, rounded to uint8 as the application writes it, read by the FP32 decoder —
    the share of the 32 bits that are the ones the reference's frame gives."""
    out, ref = (np.asarray(next(iter(d.values()))) for d in (outputs, reference))
    return float(np.mean(_decoded(out) == _decoded(ref)))
