"""tempocnn's tempo classifier, `fcn` (its default; `tempocnn/models/fcn.h5` in the tempocnn 0.0.8 wheel, AGPL-3.0,
1.3 MB, Keras 2), converted as its users convert a Keras model: `tf2onnx.convert.from_keras` (tf2onnx 1.16.1,
tensorflow-cpu 2.15.1, opset 17) with input `input` N×40×256×1 (40 mel bands × 256 frames, NHWC as Keras has it);
output `Activ10` N×256, a softmax over tempi 30 … 285 BPM. Tried as a new user (docs/trained-models.md, twelfth
stop); not stored (the licence).

The application: `TempoClassifier.estimate_tempo` takes the argmax (`index + 30` BPM); the decision here is that
tempo (`tempo_metric`: the share of clips whose tempo is the reference's). The clips are drum loops drawn here at
known tempi (`loop`: kick and snare on the beats, a hi-hat between, swing, noise), made into features as tempocnn's
`read_features` and `max_normalizer` make them (`features`: librosa's mel spectrogram at 11025 Hz, n_fft 1024, hop
512, 40 bands from 20 to 5000 Hz, magnitude; divided by its max)."""

from __future__ import annotations

import numpy as np

SR = 11025


def loop(bpm: float, seed: int) -> np.ndarray:
    """12.5 s of a drum loop at `bpm`, float32 mono at 11025 Hz."""
    r = np.random.default_rng(seed)
    n = int(SR * 12.5)
    y = np.zeros(n, np.float32)
    beat = 60.0 / bpm
    t = np.arange(int(0.15 * SR)) / SR
    kick = np.sin(2 * np.pi * (60 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 18)
    snare = r.normal(0, 1, len(t)) * np.exp(-t * 25) * 0.6
    hat = r.normal(0, 1, len(t)) * np.exp(-t * 80) * 0.25
    swing = r.uniform(0, 0.04)
    k, pos = 0, r.uniform(0, beat)
    while pos < n / SR - 0.2:
        i = int(pos * SR)
        y[i:i + len(t)] += (kick if k % 2 == 0 else snare)[: n - i] * r.uniform(0.7, 1.0)
        j = int((pos + beat / 2 + swing * beat) * SR)
        if j < n - len(t):
            y[j:j + len(t)] += hat * r.uniform(0.5, 1.0)
        pos, k = pos + beat, k + 1
    y += r.normal(0, 0.01, n)
    return y / np.abs(y).max()


def features(y: np.ndarray) -> np.ndarray:
    """tempocnn's `read_features` (its first 256 frames) and `max_normalizer`: 1×40×256×1 float32."""
    import librosa

    d = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, power=1, n_mels=40, fmin=20,
                                       fmax=5000)[:, :256]
    d = d.reshape(1, 40, 256, 1)
    return (d / np.max(d)).astype(np.float32)


def tempo_metric(outputs, reference, label=None) -> float:
    """The share of clips whose tempo (the argmax of `Activ10`) is the reference's."""
    a, b = (np.asarray(d["Activ10"]).argmax(-1) for d in (outputs, reference))
    return float(np.mean(a == b))
