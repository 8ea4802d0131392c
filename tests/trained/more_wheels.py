"""More of the trained-weights corpus (issue 115, item 6): basic-pitch's note model (Spotify's TensorFlow model as
its wheel ships it in ONNX, converted by tf2onnx) and facenet-pytorch's MTCNN proposal and output networks (PyTorch
weights in its wheel, exported here as their users export them), each with its application's decision.

    pip install --no-deps basic-pitch facenet-pytorch   # 30 MB and 2 MB wheels; torch as installed"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.trained.corpus import wheel_file


def _tone(midi: int, seconds: float, sr: int) -> np.ndarray:
    """A plucked note: seven harmonics decaying 0.6 each, a 10 ms attack, an exponential decay."""
    f, t = 440 * 2 ** ((midi - 69) / 12), np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f * t) * 0.6 ** k for k in range(1, 8))
    return y * np.exp(-3 * t) * np.minimum(1, t / 0.01)


@dataclass
class BasicPitch:
    """basic-pitch 0.4 (`saved_models/icassp_2022/nmp.onnx`): a harmonic CQT front end written as convs, a small CNN,
    sigmoid note / onset / contour maps (86 frames × 88 keys). Decision: the notes basic-pitch decodes (an onset
    peak ≥ 0.5 held by the note map ≥ 0.3 for more than 11 frames, its defaults), as (key, onset frame // 4)."""

    name: str = "basic-pitch"
    sr: int = 22050
    n: int = 43844  # AUDIO_N_SAMPLES: 2 s at 22.05 kHz less one hop
    songs: tuple = (((0.1, 60, 0.6), (0.5, 64, 0.6), (0.9, 67, 0.8), (1.2, 72, 0.6)),
                    ((0.05, 57, 0.5), (0.45, 62, 0.5), (0.45, 65, 0.5), (1.0, 69, 0.9)),
                    ((0.2, 48, 1.0), (0.6, 55, 0.5), (1.1, 76, 0.7)),
                    ((0.0, 71, 0.3), (0.3, 74, 0.3), (0.6, 79, 0.3), (0.9, 83, 0.8)))

    def model(self):
        import onnx

        return onnx.load(wheel_file("basic-pitch", "basic_pitch/saved_models/icassp_2022/nmp.onnx"))

    def samples(self, run) -> list[dict]:
        feeds = []
        for seed, song in enumerate(self.songs):
            y = np.zeros(self.n)
            for start, midi, seconds in song:
                s = int(start * self.sr)
                seg = _tone(midi, seconds, self.sr)[: self.n - s]
                y[s:s + seg.size] += seg
            y = y / np.abs(y).max() * 0.5 + 0.002 * np.random.default_rng(seed).standard_normal(self.n)
            feeds.append({"serving_default_input_2:0": y.astype(np.float32)[None, :, None]})
        return feeds

    def decisions(self, run, feeds) -> list:
        return [self.notes(*run(f)[:2]) for f in feeds]

    @staticmethod
    def notes(onset, note, onset_t: float = 0.5, frame_t: float = 0.3, min_len: int = 11) -> tuple:
        """The graph's outputs in its order: `StatefulPartitionedCall:2` the onsets, `:1` the notes."""
        from scipy.signal import argrelmax

        onset, note = np.asarray(onset)[0], np.asarray(note)[0]
        peaks = np.zeros_like(onset)
        at = argrelmax(onset, axis=0)
        peaks[at] = onset[at]
        found = []
        for t, key in zip(*np.where(peaks >= onset_t)):
            i = t + 1
            while i < note.shape[0] and note[i, key] >= frame_t:
                i += 1
            if i - t > min_len:
                found.append((int(key) + 21, int(t) // 4))
        return tuple(sorted(found))


def _portraits() -> list:
    """matplotlib's grace_hopper.jpg and its mirror image, as PIL images (MTCNN reads RGB in 0..255)."""
    import matplotlib
    from PIL import Image

    img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    return [img, img.transpose(Image.FLIP_LEFT_RIGHT)]


def _mtcnn_input(x: np.ndarray) -> np.ndarray:
    """MTCNN's normalisation of HWC images (a batch: NHWC) to its NCHW input."""
    x = (np.asarray(x, np.float32) - 127.5) * 0.0078125
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None] if x.ndim == 3 else x.transpose(0, 3, 2, 1))


def _mtcnn_onnx(net: str, shape: tuple, dynamic: bool):
    """facenet-pytorch's `net` (pnet / rnet / onet) with its wheel's weights, exported as its users export it."""
    import io

    import onnx
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    module = {"pnet": PNet, "rnet": RNet, "onet": ONet}[net]().eval()
    buf = io.BytesIO()
    axes = {"image": {2: "h", 3: "w"}} if dynamic else None
    torch.onnx.export(module, torch.zeros(shape), buf, input_names=["image"], dynamo=False, dynamic_axes=axes,
                      output_names=["reg", "prob"] if net != "onet" else ["reg", "landmarks", "prob"])
    return onnx.load_from_string(buf.getvalue())


@dataclass
class MtcnnPNet:
    """facenet-pytorch 2.6 MTCNN's proposal net (`data/pnet.pt`; 3 convs with PReLU, a softmax face score and a box
    regression per 12-px cell). Decision: the cells proposed, score ≥ 0.6 (MTCNN's first threshold), on the image
    pyramid's levels where the portrait's face is 12-40 px."""

    name: str = "mtcnn-pnet"
    scales: tuple = (0.152, 0.108, 0.076, 0.054)  # MTCNN's pyramid (0.6 · 0.709^k, k = 4..7)

    def model(self):
        return _mtcnn_onnx("pnet", (1, 3, 64, 64), dynamic=True)

    def samples(self, run) -> list[dict]:
        from PIL import Image

        return [{"image": _mtcnn_input(im.resize((int(im.height * s + 1), int(im.width * s + 1))[::-1],
                                                 Image.BILINEAR))} for im in _portraits() for s in self.scales]

    def decisions(self, run, feeds) -> list:
        return [tuple(map(tuple, np.argwhere(np.asarray(run(f)[1])[0, 1] >= 0.6).tolist())) for f in feeds]


@dataclass
class MtcnnONet:
    """facenet-pytorch 2.6 MTCNN's output net (`data/onet.pt`; 4 convs, a dense layer, a softmax face score, box and
    landmarks). Decision: a 48×48 crop is a face, score ≥ 0.7 (MTCNN's third threshold): crops of the portrait around
    its face, shifted and scaled, and elsewhere."""

    name: str = "mtcnn-onet"
    boxes: tuple = ((120, 170, 330, 380), (100, 150, 350, 400), (140, 190, 310, 360), (90, 200, 300, 410),
                    (160, 140, 370, 350), (0, 0, 200, 200), (300, 350, 500, 550), (380, 100, 580, 300))

    def model(self):
        return _mtcnn_onnx("onet", (8, 3, 48, 48), dynamic=False)

    def samples(self, run) -> list[dict]:
        from PIL import Image

        # MTCNN feeds its crops W×H (`_mtcnn_input` transposes a batch so)
        return [{"image": _mtcnn_input(np.stack([np.asarray(im.crop((x0, y0, x1, y1)).resize((48, 48), Image.BILINEAR))
                                                 for y0, x0, y1, x1 in self.boxes]))} for im in _portraits()]

    def decisions(self, run, feeds) -> list:
        return [tuple((np.asarray(run(f)[2])[:, 1] >= 0.7).tolist()) for f in feeds]


@dataclass
class MtcnnRNet:
    """facenet-pytorch 2.6 MTCNN's refine net (`data/rnet.pt`; 3 convs with PReLU, two max-pools, a dense layer, a
    softmax face score and a box). Decision: a 24×24 crop is a face, score ≥ 0.7 (MTCNN's second threshold): a grid
    of crops of the portrait and its mirror (25 per sample: 5 × 5 shifts of 30 px around the face, one size each)."""

    name: str = "mtcnn-rnet"
    sizes: tuple = (160, 210, 260)

    def model(self):
        return _mtcnn_onnx("rnet", (25, 3, 24, 24), dynamic=False)

    def samples(self, run) -> list[dict]:
        from PIL import Image

        shifts = (-60, -30, 0, 30, 60)
        return [{"image": _mtcnn_input(np.stack([
            np.asarray(im.crop((170 + dx, 120 + dy, 170 + dx + s, 120 + dy + s)).resize((24, 24), Image.BILINEAR))
            for dy in shifts for dx in shifts]))} for im in _portraits() for s in self.sizes]

    def decisions(self, run, feeds) -> list:
        return [tuple((np.asarray(run(f)[1])[:, 1] >= 0.7).tolist()) for f in feeds]


MORE = {m.name: m for m in (BasicPitch(), MtcnnPNet(), MtcnnRNet(), MtcnnONet())}


# -- the decisions as `--metric FILE.py:FUNC` reads them (each output by name; 1.0 where the reference's hold) ------
def _jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / max(1, len(a | b))


def notes_metric(outputs, reference, label=None) -> float:
    """basic-pitch: the notes decoded from the candidate's onset and note maps against the reference's."""
    def notes(o):
        return BasicPitch.notes(o["StatefulPartitionedCall:2"], o["StatefulPartitionedCall:1"])

    return _jaccard(notes(outputs), notes(reference))


def proposals_metric(outputs, reference, label=None) -> float:
    """MTCNN's PNet: the cells proposed at 0.6, the candidate's against the reference's."""
    def cells(o):
        return map(tuple, np.argwhere(np.asarray(o["prob"])[0, 1] >= 0.6).tolist())

    return _jaccard(cells(outputs), cells(reference))


def faces_metric(outputs, reference, label=None) -> float:
    """MTCNN's RNet and ONet: the share of crops whose face / no face at 0.7 is the reference's."""
    return float(np.mean((np.asarray(outputs["prob"])[:, 1] >= 0.7) == (np.asarray(reference["prob"])[:, 1] >= 0.7)))


def boxes_metric(outputs, reference, label=None) -> float:
    """nudenet: its boxes after its own post-processing (score ≥ 0.2, NMS), the candidate's against the reference's."""
    from tests.trained.corpus import NudeNet

    return _jaccard(NudeNet.boxes(outputs["output0"]), NudeNet.boxes(reference["output0"]))


METRICS = {"nudenet": "boxes_metric", "basic-pitch": "notes_metric", "mtcnn-pnet": "proposals_metric",
           "mtcnn-rnet": "faces_metric", "mtcnn-onet": "faces_metric"}
